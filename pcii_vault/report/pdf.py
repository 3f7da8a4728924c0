"""`--pdf`: the same page rendered to PDF by WeasyPrint (same content, same headings).

WeasyPrint needs the system's Pango; it is imported only here, when a PDF is asked for,
so the rest of the report works without it. It is given only the local HTML file and a
URL fetcher that refuses everything, so rendering makes no request either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pcii_vault.errors import ConfigError

__all__ = ["ensure_pdf_support", "write_pdf"]


def _no_fetch(url: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:  # noqa: ANN401
    raise ValueError(f"the report loads nothing: refused {url}")


def ensure_pdf_support() -> None:
    """Check that a PDF can be made, before any work is done for it.

    Raises:
        ConfigError: WeasyPrint or the system libraries it needs are missing.
    """
    _weasyprint()


def _weasyprint() -> Any:  # noqa: ANN401 -- an untyped module
    try:
        import weasyprint  # noqa: PLC0415 -- optional, heavy, needs system libraries
    except (ImportError, OSError) as exc:
        raise ConfigError(
            "--pdf needs WeasyPrint and Pango: .venv/bin/pip install -e '.[report]' in the "
            "checkout (or pip install 'pcii-vault[report]') and apt-get install "
            f"libpango-1.0-0 libpangoft2-1.0-0 ({exc})"
        ) from exc
    return weasyprint


def write_pdf(html: Path, pdf: Path) -> None:
    """Render the report page `html` to `pdf` (WeasyPrint holds the whole page in memory).

    Raises:
        ConfigError: WeasyPrint or the system libraries it needs are missing.
    """
    document = _weasyprint().HTML(filename=str(html), url_fetcher=_no_fetch)
    document.write_pdf(str(pdf))

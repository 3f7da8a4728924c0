"""`pcii audit report` writes all of its outputs or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pcii_vault.report
from pcii_vault.cli.report import _Outputs
from pcii_vault.errors import InputError


def test_a_report_that_fails_part_way_leaves_none_of_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def page(_result: Any, path: Path, **_: Any) -> None:
        path.write_text("<html></html>")

    def tables(_result: Any, _directory: Path) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pcii_vault.report, "write_html", page)
    monkeypatch.setattr(pcii_vault.report, "write_csv", tables)
    outputs = _Outputs(tmp_path / "r.html", None, tmp_path / "csv", None, tmp_path / "scratch")
    with pytest.raises(InputError, match="No space"):
        outputs._pages(None, None)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == []

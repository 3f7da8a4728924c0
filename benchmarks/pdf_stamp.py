"""Stamping a released PDF: pikepdf (qpdf, what the vault uses) beside pypdf.

A 200-page PDF (Letter, each page with its own text and a 4 KiB vector drawing) is
stamped as a release stamps it: header, footer and recipient watermark on every page
and a marking first page. Timed: the vault's `stamp_pdf` (pikepdf), and the standard
pypdf recipe doing the same work (one overlay page holding the same marking operators,
merged onto each page with `merge_page`, then a first page added). Each is run
alternately, five times, and the median and min wall-clock times are printed; the
target is < 2 s for 200 pages. Both outputs are checked: every page's text carries the
header and the watermark.

Run: .venv/bin/python benchmarks/pdf_stamp.py [--pages N] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pikepdf
import pypdf

from pcii_vault.marking import PCII_HEADER, PCII_STATEMENT
from pcii_vault.marking_pdf import PdfStamp, _fonts, _marking, stamp_pdf

WATERMARK = "Released to analyst-ana - PCII-2026-00000123 - access event 42 - 2026-11-28T12:30:05Z"
STAMP = PdfStamp(PCII_HEADER, WATERMARK, (PCII_HEADER, "", PCII_STATEMENT))
SIZE = (612.0, 792.0)


def make_source(path: Path, pages: int) -> None:
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Times_Roman
        )
    )
    drawing = "".join(
        f"{i % 600} {i * 7 % 780} m {i * 3 % 600} {i * 5 % 780} l S\n" for i in range(200)
    )
    for number in range(1, pages + 1):
        text = f"BT /F1 11 Tf 72 700 Td (Assessment page {number}: findings and evidence) Tj ET\n"
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, *SIZE],
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=pikepdf.Stream(pdf, (text + drawing).encode()),
        )
        pdf.pages.append(pikepdf.Page(page))
    pdf.save(path)


def overlay_pdf(path: Path) -> None:
    """One page holding the marking operators, for pypdf's merge_page recipe."""
    pdf = pikepdf.new()
    bold, regular = _fonts(pdf)
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=[0, 0, *SIZE],
        Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(PCIIB=bold, PCIIR=regular)),
        Contents=pikepdf.Stream(pdf, _marking(STAMP, *SIZE).encode("latin-1")),
    )
    pdf.pages.append(pikepdf.Page(page))
    pdf.save(path)


def stamp_with_pypdf(source: Path, overlay: Path, dest: Path) -> None:
    stamp_page = pypdf.PdfReader(overlay).pages[0]
    writer = pypdf.PdfWriter(clone_from=source)
    for page in writer.pages:
        page.merge_page(stamp_page)
    writer.insert_page(stamp_page, 0)  # the marking first page (as cheap as it gets)
    with dest.open("wb") as handle:
        writer.write(handle)


def check(path: Path, pages: int) -> None:
    reader = pypdf.PdfReader(path)
    if len(reader.pages) != pages + 1:
        raise SystemExit(f"{path.name}: {len(reader.pages)} pages, expected {pages + 1}")
    for page in reader.pages[1:]:
        text = page.extract_text()
        if PCII_HEADER not in text or WATERMARK not in text:
            raise SystemExit(f"{path.name}: a page lacks the marking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source, overlay = root / "source.pdf", root / "overlay.pdf"
        make_source(source, args.pages)
        overlay_pdf(overlay)
        timings: dict[str, list[float]] = {"pikepdf (vault)": [], "pypdf merge_page": []}
        for run in range(args.runs):
            for name, values in timings.items():
                dest = root / f"out-{run}-{name[:5]}.pdf"
                start = time.perf_counter()
                if name.startswith("pikepdf"):
                    stamp_pdf(source, dest, STAMP)
                else:
                    stamp_with_pypdf(source, overlay, dest)
                values.append(time.perf_counter() - start)
                if run == 0:
                    check(dest, args.pages)
        print(
            f"stamping a {args.pages}-page PDF ({source.stat().st_size / 1e6:.1f} MB), "
            f"{args.runs} runs alternating; python {sys.version.split()[0]}, "
            f"pikepdf {pikepdf.__version__} (qpdf {pikepdf.__libqpdf_version__}), "
            f"pypdf {pypdf.__version__}, load {os.getloadavg()[0]:.2f}"
        )
        for name, values in timings.items():
            print(
                f"  {name:18} median {statistics.median(values):.3f} s  "
                f"min {min(values):.3f} s  (target < 2 s)"
            )


if __name__ == "__main__":
    main()

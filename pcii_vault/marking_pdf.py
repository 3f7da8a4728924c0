"""PCII marking stamped into a released PDF, page by page.

`stamp_pdf` writes a copy of a PDF attachment in which every original page carries the
header and footer "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION" and the recipient's
watermark (principal, tracking number, access event index), and which starts with one
added page: the marking, the release facts and the 6 CFR 29.6(c) statement verbatim. So
the released file has the original's pages plus one.

Invariants:
- the original page content is made a form XObject, drawn first, and the marking drawn
  after it in a stream of its own, in the page's visible orientation (`/Rotate` and the
  crop box clipped to the media box honoured), so nothing in a page's content (graphics
  state, clip, text mode, an unterminated token, an open layer) can hide or displace the
  marking;
- nothing is drawn above the marking and nothing travels unmarked: the catalog and the
  pages keep only what shows the pages (allow-lists), so annotations, forms, embedded and
  associated files, thumbnails, private data, pages outside the page tree, JavaScript
  and actions are removed;
- the page tree is counted before qpdf expands it, and the count stops at `MAX_PAGES`;
- the text uses the standard Helvetica fonts (nothing embedded, nothing fetched);
- the input is untrusted: a file that cannot be opened, is encrypted with a password, or
  fails anywhere while being stamped raises `UnmarkablePdf` and no output is left, so
  the caller withholds it (fail closed) and says why on the cover sheet;
- encryption is removed from the copy (the recipient's copy is protected by its marking
  and by PCII handling rules, not by a password the recipient does not have).

pikepdf (qpdf) was chosen over pypdf by measurement: see benchmarks/pdf_stamp.py.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pikepdf

__all__ = [
    "MAX_PAGES",
    "PdfStamp",
    "UnmarkablePdf",
    "file_looks_like_pdf",
    "is_pdf_name",
    "looks_like_pdf",
    "stamp_pdf",
]

# Beyond this a PDF is withheld: each page is a form and a marking in the copy.
MAX_PAGES = 10_000
# A page whose content streams (an array of them) inflate past this is withheld; so is a
# PDF whose pages' arrays inflate past the second bound in all (one stream shared by every
# page of ten thousand would otherwise be inflated ten thousand times).
MAX_CONTENT_BYTES = 64 << 20
MAX_CONTENT_BYTES_IN_ALL = 256 << 20
# A larger PDF is withheld: qpdf holds a PDF's objects in memory, about three times its
# size, and a release must not take a server's memory with it.
MAX_PDF_BYTES = 256 << 20

# Letter, for the added first page when the original's first page has no usable size.
_LETTER = (612.0, 792.0)
_HELVETICA_WIDTH = 0.6  # average glyph width per point of font size (capitals: wider)
_MARGIN = 18.0
_MIN_PAGE = 72.0  # points: one inch, the smallest page the marking fits on


class UnmarkablePdf(Exception):  # noqa: N818 -- a verdict on an attachment, not a failure
    """The file cannot be stamped; `str()` is a short reason for the cover sheet."""


@dataclass(frozen=True)
class PdfStamp:
    """What every released page of one PDF attachment carries.

    Attributes:
        header: the marking, e.g. "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION".
        watermark: the recipient line (principal, tracking number, access event index).
        first_page: the lines of the added first page (facts and the 29.6(c) statement).
    """

    header: str
    watermark: str
    first_page: tuple[str, ...]


def is_pdf_name(name: str) -> bool:
    """Whether an attachment is treated as a PDF by its name (it ends in .pdf)."""
    return name.lower().endswith(".pdf")


_PDF_HEADER = b"%PDF-"


def looks_like_pdf(data: bytes) -> bool:
    """Whether a PDF reader may open `data` as a PDF: `%PDF-` anywhere in it.

    Readers look for the header in the first kilobyte (ISO 32000-2, 7.5.2), but poppler,
    finding none there, goes on ("May not be a PDF file (continuing anyway)") and shows
    a PDF that starts anywhere further on.
    """
    return _PDF_HEADER in data


def file_looks_like_pdf(path: Path) -> bool:
    """`looks_like_pdf` of a file's bytes, read a mebibyte at a time."""
    with path.open("rb") as handle:
        tail = b""
        while chunk := handle.read(1 << 20):
            if looks_like_pdf(tail + chunk):
                return True
            tail = chunk[1 - len(_PDF_HEADER) :]
    return False


def stamp_pdf(source: Path, dest: Path, stamp: PdfStamp) -> int:
    """Write `source`, stamped on every page and with a marking first page, to `dest`.

    Args:
        source: the decrypted attachment.
        dest: a new file to write (must not exist).
        stamp: the marking to apply.

    Returns:
        The page count of the stamped copy (the original's plus one).

    Raises:
        UnmarkablePdf: the file cannot be parsed or stamped; `dest` is not left behind.
    """
    import pikepdf  # noqa: PLC0415 -- qpdf is loaded only by releases that carry PDFs

    size = source.stat().st_size
    if size > MAX_PDF_BYTES:
        raise UnmarkablePdf(f"the PDF is larger than {MAX_PDF_BYTES >> 20} MiB; not marked")
    if not size:
        raise UnmarkablePdf("the PDF is an empty file")
    try:
        with pikepdf.open(source) as pdf:
            fonts = _fonts(pdf)
            pages = _pages(pdf)
            _strip_active_content(pdf)
            budget = [MAX_CONTENT_BYTES_IN_ALL]
            for page in pages:
                _stamp_page(pdf, page, fonts, stamp, budget)
            width, height = _visible_size(pages[0])
            pdf.pages.insert(0, _first_page(pdf, fonts, stamp, width, height))
            count = len(pdf.pages)
            # A new file, readable by its owner only, like every released file.
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                # Streams are written as they are stored: qpdf's default would inflate
                # and deflate each again (a small stream inflating to gigabytes, too).
                pdf.save(
                    handle,
                    encryption=False,
                    stream_decode_level=pikepdf.StreamDecodeLevel.none,
                )
    except UnmarkablePdf:
        dest.unlink(missing_ok=True)
        raise
    except pikepdf.PasswordError:
        dest.unlink(missing_ok=True)
        raise UnmarkablePdf("the PDF is encrypted with a password") from None
    except FileExistsError:
        raise
    except Exception as exc:  # noqa: BLE001 -- untrusted input: any failure withholds it
        dest.unlink(missing_ok=True)
        raise UnmarkablePdf(f"the PDF cannot be parsed ({type(exc).__name__})") from None
    return count


def _pages(pdf: pikepdf.Pdf) -> list[pikepdf.Page]:
    count = _count_pages(pdf.Root.get("/Pages"))
    if not count:
        raise UnmarkablePdf("the PDF has no pages")
    return list(pdf.pages)


def _count_pages(tree: object) -> int:
    """The pages the tree lists, counted before qpdf flattens it (which copies each).

    One page object listed a million times is a 9 MB file that qpdf would expand into
    gigabytes: the walk stops past `MAX_PAGES`. A node met twice (a cycle, or one
    subtree listed twice) is refused, as a viewer could not show it either.
    """
    import pikepdf  # noqa: PLC0415

    count = 0
    seen: set[tuple[int, int]] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, pikepdf.Dictionary):
            raise UnmarkablePdf("the PDF's page tree holds something other than pages")
        kids = node.get("/Kids")
        if kids is None or node.get("/Type") == pikepdf.Name.Page:
            count += 1
            if count > MAX_PAGES:
                raise _too_many_pages()
            continue
        if node.is_indirect:
            if node.objgen in seen:
                raise UnmarkablePdf("the PDF's page tree lists a part of itself twice")
            seen.add(node.objgen)
        if not isinstance(kids, pikepdf.Array):
            raise UnmarkablePdf("the PDF's page tree holds something other than pages")
        if len(kids) > MAX_PAGES:
            raise _too_many_pages()
        stack.extend(reversed(list(kids)))
    return count


def _too_many_pages() -> UnmarkablePdf:
    return UnmarkablePdf(f"the PDF has more than {MAX_PAGES} pages; at most {MAX_PAGES} are marked")


# What a released PDF keeps (PDF 32000-1 7.7.2 to 7.7.3.3): the page tree and how a
# viewer shows it. Everything else of the catalog and of the page objects goes, among it
# what would travel unmarked (embedded and associated files, thumbnails, private and
# XMP data, named pages and templates outside the page tree, the structure tree) or run
# in the recipient's viewer (actions, JavaScript, forms, annotations).
_CATALOG_KEPT = frozenset(
    {"/Type", "/Version", "/Pages", "/PageLabels", "/Names", "/Dests", "/Outlines"}
    | {"/ViewerPreferences", "/PageLayout", "/PageMode", "/Lang", "/OCProperties"}
)
_PAGE_KEPT = frozenset(
    {"/Type", "/Parent", "/Resources", "/MediaBox", "/CropBox", "/BleedBox", "/TrimBox"}
    | {"/ArtBox", "/Contents", "/Rotate", "/Group", "/UserUnit"}
)
_PAGE_TREE_KEPT = frozenset(
    {"/Type", "/Parent", "/Kids", "/Count", "/Resources", "/MediaBox", "/CropBox", "/Rotate"}
)
# Dropped from every object left (a form or image a page draws, a font, ...).
_NOWHERE = ("/AF", "/PieceInfo", "/Metadata", "/Thumb", "/AA", "/OPI")
_OUTLINE_ITEMS = 100_000


def _strip_active_content(pdf: pikepdf.Pdf) -> None:
    """Remove what would reach the recipient unmarked or hide the marking.

    Annotations are drawn above the page's content, marking included (an opaque one can
    cover it), so every page loses its `/Annots` (comments, form fields, links) and
    the document its form; files, thumbnails and data carried beside the pages would
    travel unmarked, and actions and JavaScript run in the recipient's viewer. The
    catalog and the pages keep only what shows the pages (allow-lists above); the name
    tree keeps named destinations only, and the outline its titles and destinations.
    """
    import pikepdf  # noqa: PLC0415

    root = pdf.Root
    _keep_only(root, _CATALOG_KEPT)
    if root.get("/PageMode") in (pikepdf.Name.UseAttachments, pikepdf.Name.UseOC):
        del root["/PageMode"]
    names = root.get("/Names")
    if isinstance(names, pikepdf.Dictionary):
        _keep_only(names, frozenset({"/Dests"}))
    elif names is not None:
        del root["/Names"]
    _strip_outline(root)
    seen: set[tuple[int, int]] = set()  # tree nodes done: each once, and no loop of /Parent
    for page in pdf.pages:
        _keep_only(page.obj, _PAGE_KEPT)
        parent = page.obj.get("/Parent")
        while isinstance(parent, pikepdf.Dictionary) and "/Kids" in parent:
            if parent.is_indirect:
                if parent.objgen in seen:
                    break
                seen.add(parent.objgen)
            _keep_only(parent, _PAGE_TREE_KEPT)
            parent = parent.get("/Parent")
    for obj in pdf.objects:
        if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            for key in _NOWHERE:
                if key in obj:
                    del obj[key]


def _keep_only(node: pikepdf.Object, kept: frozenset[str]) -> None:
    for key in list(node.keys()):
        if key not in kept:
            del node[key]


def _strip_outline(root: pikepdf.Object) -> None:
    """Outline items keep their titles and destinations, never an action.

    A `/GoTo` action becomes the destination it names; any other action is dropped.
    """
    import pikepdf  # noqa: PLC0415

    outlines = root.get("/Outlines")
    if outlines is None:
        return
    if not isinstance(outlines, pikepdf.Dictionary):
        del root["/Outlines"]
        return
    seen: set[tuple[int, int]] = set()
    stack = [outlines.get("/First")]
    while stack:
        item = stack.pop()
        if not isinstance(item, pikepdf.Dictionary):
            continue
        if item.is_indirect:
            if item.objgen in seen or len(seen) >= _OUTLINE_ITEMS:
                continue
            seen.add(item.objgen)
        action = item.get("/A")
        if (
            isinstance(action, pikepdf.Dictionary)
            and action.get("/S") == pikepdf.Name.GoTo
            and "/D" in action
            and "/Dest" not in item
        ):
            item.Dest = action.D
        for key in ("/A", "/SE"):
            if key in item:
                del item[key]
        stack.extend((item.get("/Next"), item.get("/First")))


def _fonts(pdf: pikepdf.Pdf) -> tuple[pikepdf.Object, pikepdf.Object]:
    import pikepdf  # noqa: PLC0415

    def font(base: str) -> pikepdf.Object:
        return pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Font,
                Subtype=pikepdf.Name.Type1,
                BaseFont=pikepdf.Name(base),
                Encoding=pikepdf.Name.WinAnsiEncoding,
            )
        )

    return font("/Helvetica-Bold"), font("/Helvetica")


def _box(page: pikepdf.Page) -> tuple[float, float, float, float]:
    """What a viewer shows: the crop box clipped to the media box (PDF 32000 14.11.2)."""
    crop = _normalised([float(Decimal(str(v))) for v in page.cropbox])
    media = _normalised([float(Decimal(str(v))) for v in page.mediabox])
    x0, y0 = max(crop[0], media[0]), max(crop[1], media[1])
    x1, y1 = min(crop[2], media[2]), min(crop[3], media[3])
    if x1 - x0 < _MIN_PAGE or y1 - y0 < _MIN_PAGE:
        # The header and footer are drawn 7 to 24 points inside the page's edges: on a
        # smaller page (its content scaled down, shown full size by "fit page") they
        # would lie outside it and the page would show no marking.
        raise UnmarkablePdf(
            f"a page is smaller than {_MIN_PAGE:g} points (one inch) across; the marking "
            "would not fit on it"
        )
    return x0, y0, x1, y1


def _normalised(box: list[float]) -> tuple[float, float, float, float]:
    return min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])


def _rotation(page: pikepdf.Page) -> int:
    node: pikepdf.Object = page.obj
    for _ in range(64):  # /Rotate is inheritable from the page tree
        if "/Rotate" in node:
            return int(node.Rotate) % 360
        if "/Parent" not in node:
            break
        node = node.Parent
    return 0


def _visible_size(page: pikepdf.Page) -> tuple[float, float]:
    x0, y0, x1, y1 = _box(page)
    width, height = x1 - x0, y1 - y0
    return (height, width) if _rotation(page) in {90, 270} else (width, height)


def _matrix(page: pikepdf.Page) -> str:
    """`cm` operands from visible coordinates (origin bottom left as shown) to user space."""
    x0, y0, x1, y1 = _box(page)
    width, height = x1 - x0, y1 - y0
    a, b, c, d, e, f = {
        0: (1, 0, 0, 1, x0, y0),
        90: (0, 1, -1, 0, x0 + width, y0),
        180: (-1, 0, 0, -1, x0 + width, y0 + height),
        270: (0, -1, 1, 0, x0, y0 + height),
    }.get(_rotation(page), (1, 0, 0, 1, x0, y0))
    return f"{a} {b} {c} {d} {e:.2f} {f:.2f} cm"


def _literal(text: str) -> str:
    """A PDF literal string in WinAnsi: printable Latin-1, backslash and parentheses escaped."""
    safe = "".join(ch if ch.isprintable() and ord(ch) < 256 else "?" for ch in text)
    return "(" + safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _fitted(text: str, size: float, width: float) -> float:
    """The font size (at most `size`) at which `text` fits across `width`."""
    room = max(width - 2 * _MARGIN, 10.0)
    return max(min(size, room / max(len(text) * _HELVETICA_WIDTH, 1.0)), 2.0)


def _centred(font: str, text: str, size: float, width: float, y: float) -> str:
    size = _fitted(text, size, width)
    x = max((width - len(text) * size * _HELVETICA_WIDTH) / 2, 2.0)
    return f"BT /{font} {size:.2f} Tf {x:.2f} {y:.2f} Td {_literal(text)} Tj ET\n"


def _marking(stamp: PdfStamp, width: float, height: float) -> str:
    """Header, watermark line and footer, plus a light diagonal watermark, as operators."""
    diagonal = _fitted(stamp.watermark, 14.0, (width**2 + height**2) ** 0.5 * 0.8)
    return (
        "q 0.75 g\n"
        f"BT /PCIIR {diagonal:.2f} Tf 0.7071 0.7071 -0.7071 0.7071 "
        f"{width * 0.15:.2f} {height * 0.2:.2f} Tm {_literal(stamp.watermark)} Tj ET\nQ\n"
        "q 0 g\n"
        + _centred("PCIIB", stamp.header, 9.0, width, height - 14)
        + _centred("PCIIR", stamp.watermark, 7.0, width, height - 24)
        + _centred("PCIIR", stamp.watermark, 7.0, width, 18)
        + _centred("PCIIB", stamp.header, 9.0, width, 7)
        + "Q\n"
    )


def _stamp_page(
    pdf: pikepdf.Pdf,
    page: pikepdf.Page,
    fonts: tuple[pikepdf.Object, pikepdf.Object],
    stamp: PdfStamp,
    budget: list[int],
) -> None:
    import pikepdf  # noqa: PLC0415

    bold, regular = fonts
    width, height = _visible_size(page)
    # The page's own content becomes a form XObject drawn by a new content stream, then
    # the marking: a form runs in its own stream with the graphics state saved around it,
    # so nothing it leaves behind (open or surplus `q`/`Q`, a clip, a text render mode, an
    # unterminated string or inline image, an open marked-content layer) reaches the
    # marking, which is drawn in the page's own coordinates.
    made = page.as_form_xobject(handle_transformations=False)
    # Its data is the page's /Contents as it is when saved: copied now, before they change.
    original = _content_copy(pdf, page, budget)
    for key in ("/Type", "/Subtype", "/BBox", "/Resources", "/Matrix"):
        if key in made:
            original[key] = made[key]
    resources = pikepdf.Dictionary(
        Font=pikepdf.Dictionary(PCIIB=bold, PCIIR=regular),
        XObject=pikepdf.Dictionary(PCIIPage=pdf.make_indirect(original)),
    )
    content = f"q /PCIIPage Do Q\nq {_matrix(page)}\n{_marking(stamp, width, height)}Q\n"
    page.obj.Resources = resources
    page.obj.Contents = pikepdf.Stream(pdf, content.encode("latin-1"))


def _content_copy(pdf: pikepdf.Pdf, page: pikepdf.Page, budget: list[int]) -> pikepdf.Stream:
    """The page's content as one new stream, never inflated past `MAX_CONTENT_BYTES`.

    One content stream is copied as it is stored (compressed: a 1 MB stream that inflates
    to gigabytes costs nothing here, and the copy is saved without decoding it); an array
    of streams is joined, each part inflated to a bound first, and what all pages' arrays
    inflate to is counted against `budget` (`MAX_CONTENT_BYTES_IN_ALL` for the document).

    Raises:
        UnmarkablePdf: the content inflates past a bound.
    """
    import pikepdf  # noqa: PLC0415

    contents = page.obj.get("/Contents")
    if isinstance(contents, pikepdf.Stream):
        copy = pikepdf.Stream(pdf, contents.read_raw_bytes())
        for key in ("/Filter", "/DecodeParms"):
            if key in contents:
                copy[key] = contents[key]
        return copy
    parts = list(contents) if isinstance(contents, pikepdf.Array) else []
    joined = bytearray()
    for part in parts:
        if not isinstance(part, pikepdf.Stream):
            continue
        room = min(MAX_CONTENT_BYTES - len(joined), budget[0] - len(joined))
        try:
            joined += _inflated(part, room) + b"\n"
        except _InflatesTooFar:
            if room < MAX_CONTENT_BYTES - len(joined):
                raise UnmarkablePdf(
                    f"the pages' content inflates past {MAX_CONTENT_BYTES_IN_ALL >> 20} MiB in "
                    "all; not marked"
                ) from None
            raise
    budget[0] -= len(joined)
    return pikepdf.Stream(pdf, bytes(joined))


def _inflated(stream: pikepdf.Stream, room: int) -> bytes:
    """A content stream's data, refused once it inflates past `room` bytes.

    Raises:
        UnmarkablePdf: it inflates past `room`.
    """
    import zlib  # noqa: PLC0415

    import pikepdf  # noqa: PLC0415

    filters = stream.get("/Filter")
    if filters is None:
        data = stream.read_raw_bytes()  # stored as it is: no larger than the file
    elif filters == pikepdf.Name.FlateDecode and "/DecodeParms" not in stream:
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(stream.read_raw_bytes(), max(room, 0) + 1)
        except zlib.error as exc:
            raise UnmarkablePdf("a page's content cannot be inflated") from exc
    else:
        # qpdf decodes a chain of filters whole, with no bound (two Flate filters in a
        # row inflate a few kilobytes to gigabytes): not decoded here, the PDF withheld.
        raise UnmarkablePdf(
            f"a page's content parts use filters ({filters}) the vault does not inflate "
            "within bounds; not marked"
        )
    if len(data) > room:
        raise _InflatesTooFar(
            f"a page's content inflates past {MAX_CONTENT_BYTES >> 20} MiB; not marked"
        )
    return data


class _InflatesTooFar(UnmarkablePdf):
    """A page's content inflates past the room left for it."""


def _first_page(
    pdf: pikepdf.Pdf,
    fonts: tuple[pikepdf.Object, pikepdf.Object],
    stamp: PdfStamp,
    width: float,
    height: float,
) -> pikepdf.Page:
    import pikepdf  # noqa: PLC0415

    if width < 200 or height < 200:
        width, height = _LETTER
    size = 10.0
    columns = max(int((width - 2 * _MARGIN * 2) / (size * 0.5)), 20)
    lines: list[str] = []
    for line in stamp.first_page:
        lines.extend(textwrap.wrap(line, columns) or [""])
    leading = min(size * 1.3, (height - 80) / max(len(lines), 1))
    size = min(size, leading / 1.3)
    body = [f"BT /PCIIR {size:.2f} Tf {leading:.2f} TL {2 * _MARGIN:.2f} {height - 60:.2f} Td"]
    body += [f"{_literal(line)} '" for line in lines]
    body.append("ET")
    content = "q 0 g\n" + "\n".join(body) + "\nQ\n" + _marking(stamp, width, height)
    bold, regular = fonts
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=[0, 0, width, height],
        Resources=pikepdf.Dictionary(
            Font=pikepdf.Dictionary(PCIIB=bold, PCIIR=regular),
        ),
        Contents=pikepdf.Stream(pdf, content.encode("latin-1")),
    )
    return pikepdf.Page(pdf.make_indirect(page))

"""PDF attachments stamped page by page, on PDFs the tests generate.

Each released page's extracted text (pypdf, pure Python: no Debian package needed) must
carry the header, the footer and the recipient watermark, and the released file has the
original's pages plus one (the marking first page with the 6 CFR 29.6(c) statement).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pikepdf
import pypdf
import pytest

from pcii_vault.marking import PCII_HEADER, PCII_STATEMENT
from pcii_vault.marking_pdf import PdfStamp, UnmarkablePdf, is_pdf_name, stamp_pdf

WATERMARK = "Released to analyst-ana - PCII-2026-00000123 - access event 42 - 2026-11-28T12:30:05Z"
STAMP = PdfStamp(
    header=PCII_HEADER,
    watermark=WATERMARK,
    first_page=(PCII_HEADER, "", "PCII record PCII-2026-00000123", "", PCII_STATEMENT),
)
LETTER = (612, 792)
A4 = (595, 842)


def make_pdf(
    path: Path,
    pages: int,
    size: tuple[float, float] = LETTER,
    *,
    rotate: int = 0,
    inherited_rotate: int | None = None,
    encryption: pikepdf.Encryption | None = None,
) -> Path:
    """A PDF whose page i says "Original page i" in Times, drawn inside a scaled CTM."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Times_Roman
        )
    )
    for number in range(1, pages + 1):
        # A page that leaves its graphics state changed (no closing Q) must not move or
        # hide the marking drawn after it.
        content = f"q 2 0 0 2 0 0 cm BT /F1 6 Tf 10 {size[1] / 4} Td (Original page {number}) Tj ET"
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, *size],
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=pikepdf.Stream(pdf, content.encode()),
        )
        if rotate:
            page.Rotate = rotate
        pdf.pages.append(pikepdf.Page(page))
    if inherited_rotate is not None:
        pdf.Root.Pages.Rotate = inherited_rotate
    if encryption is not None:
        pdf.save(path, encryption=encryption)
    else:
        pdf.save(path)
    return path


def _check_released(path: Path, original_pages: int) -> None:
    reader = pypdf.PdfReader(path)
    assert len(reader.pages) == original_pages + 1
    first = reader.pages[0].extract_text()
    assert "6 CFR part 29" in first
    for number, page in enumerate(reader.pages):
        text = page.extract_text()
        assert text.count(PCII_HEADER) >= 2, f"page {number}: header and footer\n{text}"
        assert WATERMARK in text, f"page {number}: watermark\n{text}"
        if number:
            assert f"Original page {number}" in text


@pytest.mark.parametrize(
    ("pages", "size"),
    [(1, LETTER), (3, A4), (2, (144, 144)), (1, (72, 72)), (2, (1224, 792)), (5, (300, 1800))],
    ids=["letter", "a4", "small", "one-inch", "tabloid-landscape", "tall"],
)
def test_every_page_of_every_size_is_stamped(
    tmp_path: Path, pages: int, size: tuple[float, float]
) -> None:
    source = make_pdf(tmp_path / "in.pdf", pages, size)
    assert stamp_pdf(source, tmp_path / "out.pdf", STAMP) == pages + 1
    _check_released(tmp_path / "out.pdf", pages)


@pytest.mark.parametrize("size", [(4, 4), (71, 600), (600, 71)])
def test_a_page_too_small_for_the_marking_is_not_released_unmarked(
    tmp_path: Path, size: tuple[float, float]
) -> None:
    """A tester's finding: a 4 x 4 pt page (its content scaled down, shown full size by a
    viewer's "fit page") was released with its header and footer drawn outside it."""
    source = make_pdf(tmp_path / "in.pdf", 2, LETTER)
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        pdf.pages[1].obj.MediaBox = [0, 0, *size]
        pdf.save(source)
    with pytest.raises(UnmarkablePdf, match=r"smaller than 72 points \(one inch\) across"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


@pytest.mark.parametrize("rotate", [90, 180, 270, -90])
def test_rotated_pages_are_stamped(tmp_path: Path, rotate: int) -> None:
    source = make_pdf(tmp_path / "in.pdf", 2, A4, rotate=rotate)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    _check_released(tmp_path / "out.pdf", 2)


def test_a_page_that_leaves_states_open_cannot_clip_or_move_the_marking(tmp_path: Path) -> None:
    """Three unclosed `q`, a clip to a 1-point square and a far-off transform."""
    source = make_pdf(tmp_path / "in.pdf", 2)
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        for page in pdf.pages:
            page.contents_add(
                pikepdf.Stream(pdf, b"q q 0 0 1 1 re W n q 1 0 0 1 5000 5000 cm"), prepend=False
            )
        pdf.save(source)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    _check_released(tmp_path / "out.pdf", 2)
    with pikepdf.open(tmp_path / "out.pdf") as pdf:
        operators = [str(i.operator) for i in pikepdf.parse_content_stream(pdf.pages[1], "q Q")]
    # Balanced: every state opened is closed before the marking is drawn.
    depth = 0
    for operator in operators:
        depth += 1 if operator == "q" else -1
        assert depth >= 0
    assert depth == 0


@pytest.mark.parametrize(
    "tail",
    [
        b"Q Q 3 Tr",
        b"Q 0 Tz",
        b"Q 0 0 1 1 re W n",
        b"(unterminated",
        b"BI /W 1 /H 1 ID ",
        b"/OC /x BDC",
    ],
    ids=[
        "surplus-Q-invisible-text",
        "zero-scale",
        "surplus-Q-clip",
        "string",
        "inline-image",
        "layer",
    ],
)
def test_nothing_a_page_leaves_behind_reaches_the_marking(tmp_path: Path, tail: bytes) -> None:
    """The page's content runs as a form XObject; the marking is in a stream of its own."""
    source = make_pdf(tmp_path / "in.pdf", 1)
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        pdf.pages[0].contents_add(pikepdf.Stream(pdf, tail), prepend=False)
        pdf.save(source)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    with pikepdf.open(tmp_path / "out.pdf") as pdf:
        page = pdf.pages[1]
        drawn = [
            (str(i.operator), [str(o) for o in i.operands])
            for i in pikepdf.parse_content_stream(page)
        ]
        form = page.obj.Resources.XObject.PCIIPage
        assert tail in form.read_bytes() and b"Original page 1" in form.read_bytes()
    # The page draws the original (a form: its state saved and restored around it), then
    # the marking from a clean state: no text mode, scale or clip of the page's applies.
    assert drawn[:3] == [("q", []), ("Do", ["/PCIIPage"]), ("Q", [])]
    texts = [operands[0] for operator, operands in drawn if operator == "Tj"]
    assert texts.count(PCII_HEADER) == 2 and WATERMARK in texts
    assert all(operator not in {"Tr", "Tz", "W", "BDC", "BI"} for operator, _ in drawn)


def test_a_rotation_inherited_from_the_page_tree_is_honoured(tmp_path: Path) -> None:
    source = make_pdf(tmp_path / "in.pdf", 2, LETTER, inherited_rotate=90)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    _check_released(tmp_path / "out.pdf", 2)
    # The added first page is upright in the orientation the reader sees (landscape).
    first = pypdf.PdfReader(tmp_path / "out.pdf").pages[0]
    assert float(first.mediabox.width) > float(first.mediabox.height)


def test_an_owner_password_pdf_is_stamped_and_released_without_encryption(
    tmp_path: Path,
) -> None:
    source = make_pdf(
        tmp_path / "in.pdf", 3, encryption=pikepdf.Encryption(owner="secret", user="")
    )
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not pypdf.PdfReader(tmp_path / "out.pdf").is_encrypted
    _check_released(tmp_path / "out.pdf", 3)


def test_a_user_password_pdf_is_unmarkable(tmp_path: Path) -> None:
    source = make_pdf(tmp_path / "in.pdf", 3, encryption=pikepdf.Encryption(owner="o", user="u"))
    with pytest.raises(UnmarkablePdf, match="encrypted"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"%PDF-1.7\n" + b"\x00garbage" * 100,
        lambda data: b"not a pdf at all",
        lambda data: b"",
    ],
    ids=["garbage-after-header", "not-pdf", "empty"],
)
def test_a_damaged_pdf_is_unmarkable_and_leaves_nothing(tmp_path: Path, damage: object) -> None:
    source = make_pdf(tmp_path / "in.pdf", 2)
    assert callable(damage)
    source.write_bytes(damage(source.read_bytes()))
    with pytest.raises(UnmarkablePdf):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def test_a_truncated_pdf_is_either_repaired_and_fully_stamped_or_unmarkable(
    tmp_path: Path,
) -> None:
    """qpdf repairs what it can; whatever it releases is marked on every page."""
    source = make_pdf(tmp_path / "in.pdf", 4)
    source.write_bytes(source.read_bytes()[:-200])
    try:
        count = stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    except UnmarkablePdf:
        assert not (tmp_path / "out.pdf").exists()
        return
    _check_released(tmp_path / "out.pdf", count - 1)


def test_markup_and_non_latin_text_in_the_watermark_is_safe(tmp_path: Path) -> None:
    stamp = PdfStamp(PCII_HEADER, "Released to x (a) \\\\ [b] 名前", (PCII_HEADER,))
    source = make_pdf(tmp_path / "in.pdf", 1)
    stamp_pdf(source, tmp_path / "out.pdf", stamp)
    text = pypdf.PdfReader(tmp_path / "out.pdf").pages[1].extract_text()
    assert "Released to x (a)" in text


def test_the_output_is_never_overwritten(tmp_path: Path) -> None:
    source = make_pdf(tmp_path / "in.pdf", 1)
    (tmp_path / "out.pdf").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert (tmp_path / "out.pdf").read_bytes() == b"keep"


def test_pdf_names() -> None:
    assert is_pdf_name("report.PDF") and not is_pdf_name("report.pdf.zip")


def test_nothing_drawn_above_the_marking_nor_carried_unmarked_survives(tmp_path: Path) -> None:
    """An opaque annotation would cover the marking; embedded files and scripts would
    travel unmarked or run in the recipient's viewer: all removed."""
    source = make_pdf(tmp_path / "in.pdf", 2)
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        page = pdf.pages[0]
        cover = pikepdf.Stream(pdf, b"1 1 1 rg 0 0 612 792 re f")
        cover.Type, cover.Subtype = pikepdf.Name.XObject, pikepdf.Name.Form
        cover.BBox = [0, 0, 612, 792]
        page.obj.Annots = pikepdf.Array(
            [
                pdf.make_indirect(
                    pikepdf.Dictionary(
                        Type=pikepdf.Name.Annot,
                        Subtype=pikepdf.Name.Square,
                        Rect=[0, 0, 612, 792],
                        F=4,
                        AP=pikepdf.Dictionary(N=cover),
                    )
                )
            ]
        )
        page.obj.AA = pikepdf.Dictionary()
        pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS="app.alert(1)")
        pdf.attachments["inner-unmarked.txt"] = pikepdf.AttachedFileSpec(pdf, b"unmarked")
        pdf.save(source)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    _check_released(tmp_path / "out.pdf", 2)
    with pikepdf.open(tmp_path / "out.pdf") as released:
        assert all("/Annots" not in p.obj and "/AA" not in p.obj for p in released.pages)
        assert "/OpenAction" not in released.Root
        assert not released.attachments


def test_a_crop_box_beyond_the_media_box_is_clipped_to_it(tmp_path: Path) -> None:
    """Viewers show crop box and media box intersected: the marking goes there."""
    source = make_pdf(tmp_path / "in.pdf", 1)
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:
        pdf.pages[0].obj.CropBox = [-3000, -3000, 3612, 3792]
        pdf.save(source)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    with pikepdf.open(tmp_path / "out.pdf") as released:
        content = released.pages[1].obj.Contents.read_bytes()
    assert b"1 0 0 1 0.00 0.00 cm" in content, content
    _check_released(tmp_path / "out.pdf", 1)


def test_a_pdf_over_the_page_limit_is_withheld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One page object listed 100,000 times is a small file and a huge release."""
    import pcii_vault.marking_pdf

    monkeypatch.setattr(pcii_vault.marking_pdf, "MAX_PAGES", 3)
    source = make_pdf(tmp_path / "in.pdf", 4)
    with pytest.raises(UnmarkablePdf, match="has more than 3 pages; at most 3 are marked"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def _raw_pdf(path: Path, objects: list[bytes]) -> Path:
    """A PDF written byte by byte (objects 1.., catalog first): shapes pikepdf would not
    save as they are (qpdf copies a page listed twice when it writes)."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


@pytest.mark.parametrize("listed", [10_001, 1_000_000])
def test_one_page_listed_past_the_limit_is_withheld_before_it_is_expanded(
    tmp_path: Path, listed: int
) -> None:
    """A tester's finding: one page object listed a million times (a 9 MB file) made
    every release of it take 2.4 GB while qpdf expanded the tree, before the limit was
    looked at. The tree is counted first, and the count stops at the limit."""
    kids = b"3 0 R " * listed
    source = _raw_pdf(
        tmp_path / "in.pdf",
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % listed,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ],
    )
    with pytest.raises(UnmarkablePdf, match="more than 10000 pages"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def test_a_page_tree_that_contains_itself_is_withheld(tmp_path: Path) -> None:
    source = _raw_pdf(
        tmp_path / "in.pdf",
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ],
    )
    with pytest.raises(UnmarkablePdf):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


_PAYLOAD = b"UNMARKED SECRET PAYLOAD"


def test_nothing_beside_the_pages_travels_unmarked(tmp_path: Path) -> None:
    """A tester's finding: associated files (of the document, a page, a drawn form),
    outline actions (JavaScript, Launch), pages named outside the page tree (templates),
    thumbnails and private data were released as they were. The released file holds
    the marked pages and nothing of that; the outline keeps its titles and a `/GoTo`
    becomes a destination."""
    source = make_pdf(tmp_path / "in.pdf", 2)
    with pikepdf.open(source, allow_overwriting_input=True) as pdf:

        def payload(what: str) -> pikepdf.Object:
            stream = pikepdf.Stream(pdf, _PAYLOAD + b" " + what.encode())
            stream.Type = pikepdf.Name.EmbeddedFile
            spec = pikepdf.Dictionary(
                Type=pikepdf.Name.Filespec, F=what, EF=pikepdf.Dictionary(F=stream)
            )
            return pdf.make_indirect(spec)

        pdf.Root.AF = pikepdf.Array([payload("catalog")])
        page = pdf.pages[0].obj
        page.AF = pikepdf.Array([payload("page")])
        page.Thumb = pikepdf.Stream(pdf, _PAYLOAD + b" thumbnail")
        page.PieceInfo = pikepdf.Dictionary(
            App=pikepdf.Dictionary(Private=pikepdf.Stream(pdf, _PAYLOAD + b" private"))
        )
        form = pikepdf.Stream(pdf, b"")
        form.Type, form.Subtype, form.BBox = pikepdf.Name.XObject, pikepdf.Name.Form, [0, 0, 1, 1]
        form.AF = pikepdf.Array([payload("form")])
        form.Metadata = pikepdf.Stream(pdf, _PAYLOAD + b" xmp")
        page.Resources.XObject = pikepdf.Dictionary(Fm0=form)
        page.Contents = pikepdf.Stream(pdf, page.Contents.read_bytes() + b" /Fm0 Do")
        hidden = pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Page,
                MediaBox=[0, 0, 612, 792],
                Contents=pikepdf.Stream(pdf, b"BT (" + _PAYLOAD + b" template) Tj ET"),
            )
        )
        pdf.Root.Names = pikepdf.Dictionary(
            Templates=pikepdf.Dictionary(Names=pikepdf.Array(["t", hidden])),
            Pages=pikepdf.Dictionary(Names=pikepdf.Array(["p", hidden])),
        )
        pdf.Root.Metadata = pikepdf.Stream(pdf, _PAYLOAD + b" catalog xmp")
        items = [
            pikepdf.Dictionary(
                Title="script", A=pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS="app.alert(1)")
            ),
            pikepdf.Dictionary(
                Title="launch", A=pikepdf.Dictionary(S=pikepdf.Name.Launch, F="calc.exe")
            ),
            pikepdf.Dictionary(
                Title="page two",
                A=pikepdf.Dictionary(S=pikepdf.Name.GoTo, D=[pdf.pages[1].obj, pikepdf.Name.Fit]),
            ),
        ]
        outline = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Outlines))
        refs = [pdf.make_indirect(item) for item in items]
        for before, after in itertools.pairwise(refs):
            before.Next, after.Prev = after, before
        for ref in refs:
            ref.Parent = outline
        outline.First, outline.Last, outline.Count = refs[0], refs[-1], len(refs)
        pdf.Root.Outlines = outline
        pdf.save(source)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    _check_released(tmp_path / "out.pdf", 2)
    with pikepdf.open(tmp_path / "out.pdf") as released:
        for obj in released.objects:
            if isinstance(obj, pikepdf.Stream):
                assert _PAYLOAD not in obj.read_bytes(), obj.read_bytes()[:80]
            if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
                assert "/A" not in obj or obj.get("/Type") != pikepdf.Name.Outlines
                assert obj.get("/S") not in (pikepdf.Name.JavaScript, pikepdf.Name.Launch)
        titles, item = [], released.Root.Outlines.First
        while True:
            titles.append(str(item.Title))
            assert "/A" not in item
            if "/Next" not in item:
                break
            item = item.Next
        assert titles == ["script", "launch", "page two"]
        assert item.Dest[0].objgen == released.pages[2].obj.objgen


def _flate_page_pdf(path: Path, inflated: int, *, parts: int) -> Path:
    import zlib

    pdf = pikepdf.new()
    pdf.add_blank_page()
    streams = []
    for _ in range(parts):
        stream = pikepdf.Stream(pdf, zlib.compress(b" " * inflated, 9))
        stream.Filter = pikepdf.Name.FlateDecode
        streams.append(pdf.make_indirect(stream))
    pdf.pages[0].obj.Contents = streams[0] if parts == 1 else pikepdf.Array(streams)
    pdf.save(path)
    return path


def test_a_content_stream_that_inflates_hugely_is_copied_as_stored(tmp_path: Path) -> None:
    """A tester's finding: a 1 MB content stream inflating to 1 GiB cost 3.2 GB and 30 s
    per release (and stalled the server). One stream is copied compressed, never inflated,
    and saved as stored."""
    source = _flate_page_pdf(tmp_path / "in.pdf", 64 << 20, parts=1)
    stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert (tmp_path / "out.pdf").stat().st_size < 1 << 20
    with pikepdf.open(tmp_path / "out.pdf") as released:
        assert len(released.pages) == 2


def test_content_parts_that_inflate_past_the_bound_are_withheld(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An array of content streams is joined, each inflated to a bound first."""
    import pcii_vault.marking_pdf

    monkeypatch.setattr(pcii_vault.marking_pdf, "MAX_CONTENT_BYTES", 1 << 20)
    source = _flate_page_pdf(tmp_path / "in.pdf", 600 << 10, parts=2)
    with pytest.raises(UnmarkablePdf, match="inflates past"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def test_a_loop_of_parent_pointers_is_withheld_or_stamped_never_a_hang(tmp_path: Path) -> None:
    """A tester's finding: a page whose /Parent leads into two tree nodes naming each
    other as parent hung the release for ever (and, 41 times over, a whole server)."""
    source = _raw_pdf(
        tmp_path / "in.pdf",
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 4 0 R /MediaBox [0 0 612 792] >>",
            b"<< /Type /Pages /Kids [] /Parent 5 0 R /Count 0 >>",
            b"<< /Type /Pages /Kids [] /Parent 4 0 R /Count 0 >>",
        ],
    )
    try:
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    except UnmarkablePdf:
        assert not (tmp_path / "out.pdf").exists()
    else:
        with pikepdf.open(tmp_path / "out.pdf") as released:
            assert len(released.pages) == 2


def test_content_parts_shared_by_many_pages_are_counted_in_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: one stream inflating to 60 MiB, named by the content array of
    each of N pages, was inflated N times (1.5 GB at 20 pages, 600 GB possible at 10,000)."""
    import zlib

    import pcii_vault.marking_pdf

    monkeypatch.setattr(pcii_vault.marking_pdf, "MAX_CONTENT_BYTES_IN_ALL", 2 << 20)
    pdf = pikepdf.new()
    shared = pikepdf.Stream(pdf, zlib.compress(b" " * (600 << 10), 9))
    shared.Filter = pikepdf.Name.FlateDecode
    shared = pdf.make_indirect(shared)
    for _ in range(5):
        pdf.add_blank_page()
        pdf.pages[-1].obj.Contents = pikepdf.Array([shared])
    pdf.save(tmp_path / "in.pdf")
    with pytest.raises(UnmarkablePdf, match="past 2 MiB in all"):
        stamp_pdf(tmp_path / "in.pdf", tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def test_content_parts_behind_a_chain_of_filters_are_not_decoded(tmp_path: Path) -> None:
    """A tester's finding: [/FlateDecode /FlateDecode] on a content part was decoded whole
    by qpdf before the bound was looked at (2.3 KB inflating to 1 GiB: 2.1 GB of memory)."""
    import zlib

    twice = zlib.compress(zlib.compress(b" " * (1 << 20), 9), 9)
    _raw_pdf(
        tmp_path / "in.pdf",
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [4 0 R] >>",
            b"<< /Length %d /Filter [/FlateDecode /FlateDecode] >>\nstream\n" % len(twice)
            + twice
            + b"\nendstream",
        ],
    )
    with pytest.raises(UnmarkablePdf, match="does not inflate within bounds"):
        stamp_pdf(tmp_path / "in.pdf", tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def test_a_pdf_over_the_size_limit_is_withheld_before_it_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: a valid 1 GiB PDF took 3.2 GB to stamp (qpdf holds its objects)."""
    import pcii_vault.marking_pdf

    source = make_pdf(tmp_path / "in.pdf", 1)
    monkeypatch.setattr(pcii_vault.marking_pdf, "MAX_PDF_BYTES", source.stat().st_size - 1)
    with pytest.raises(UnmarkablePdf, match="larger than"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()


def test_an_empty_pdf_is_named_as_empty(tmp_path: Path) -> None:
    """A tester's finding: the cover sheet named a Python exception (PdfError or
    TypeError, by run) for a 0-byte attachment."""
    source = tmp_path / "in.pdf"
    source.write_bytes(b"")
    with pytest.raises(UnmarkablePdf, match=r"^the PDF is an empty file$"):
        stamp_pdf(source, tmp_path / "out.pdf", STAMP)
    assert not (tmp_path / "out.pdf").exists()

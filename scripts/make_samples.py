#!/usr/bin/env python3
"""Makes the sample documents in samples/ and the test fixtures in
workers/tests/fixtures/.

Everything is generated from the text in this file (PDF standard 14 fonts,
not embedded), so the outputs carry no third-party content. The output is
deterministic: rerunning the script reproduces the committed files.

Needs: reportlab, Pillow, numpy, pypdfium2==5.15.2 (see samples/README.md).

    python3 scripts/make_samples.py
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageFilter, ImageOps
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_JUSTIFY
from reportlab.lib.pagesizes import A4
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    FrameBreak,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

rl_config.invariant = 1  # fixed creation date and file id: reproducible PDFs

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
FIXTURES = ROOT / "workers" / "tests" / "fixtures"
PAGE_W, PAGE_H = A4
SEED = 417

SELLER_IBAN = "DE89 3704 0044 0532 0130 00"


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check."""
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def new_canvas(title: str, **kwargs) -> tuple[io.BytesIO, Canvas]:
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4, pageCompression=1, **kwargs)
    canvas.setTitle(title)
    canvas.setAuthor("pagestream samples")
    canvas.setCreator("scripts/make_samples.py")
    return buf, canvas


def money(value: float) -> str:
    return f"{value:,.2f}"


# --------------------------------------------------------------------------
# invoice.pdf


INVOICE_ITEMS = [
    ("Ergonomic office chair Atlas, black", 4, 289.00),
    ("Height-adjustable desk, 160 x 80 cm", 2, 412.50),
    ("Dual monitor arm, gas spring", 4, 64.90),
    ("Copy paper A4, 80 g/m2, box of 2,500 sheets", 10, 23.45),
    ("Toner cartridge TN-2420, black", 6, 48.75),
    ("Cable management kit", 8, 12.40),
    ("Delivery and assembly, flat rate", 1, 150.00),
]
VAT_RATE = 0.19


def make_invoice() -> bytes:
    assert iban_valid(SELLER_IBAN)
    buf, c = new_canvas("Invoice INV-2026-00417")
    left, right = 20 * mm, PAGE_W - 20 * mm

    def text(x, y, s, font="Helvetica", size=9.5):
        c.setFont(font, size)
        c.drawString(x, y, s)

    def text_right(x, y, s, font="Helvetica", size=9.5):
        c.setFont(font, size)
        c.drawRightString(x, y, s)

    # Letterhead
    y = PAGE_H - 22 * mm
    text(left, y, "Nordlicht Office Supplies GmbH", "Helvetica-Bold", 15)
    text(left, y - 15, "Hafenstrasse 12, 20457 Hamburg, Germany")
    text(left, y - 27, "Phone +49 40 5550 1234 | billing@nordlicht-office.example")
    text(left, y - 39, "VAT ID: DE123456788 | Tax no. 27/123/45678")

    # Title and invoice data, right column
    text_right(right, y, "INVOICE", "Helvetica-Bold", 20)
    labels = [
        ("Invoice no.:", "INV-2026-00417"),
        ("Invoice date:", "2026-11-03"),
        ("Delivery date:", "28 October 2026"),
        ("Due date:", "03.12.2026"),
        ("Customer no.:", "C-10293"),
        ("Your order:", "PO-7781 of Oct 21, 2026"),
    ]
    ly = y - 27
    for label, value in labels:
        text(right - 80 * mm, ly, label, "Helvetica-Bold")
        text(right - 50 * mm, ly, value)
        ly -= 12

    # Buyer and delivery address
    y = PAGE_H - 68 * mm
    text(left, y, "Bill to:", "Helvetica-Bold")
    bill_to = [
        "Alpenblick Hotel Betriebs GmbH",
        "Attn. Accounts Payable",
        "Maria-Theresien-Strasse 21",
        "6020 Innsbruck, Austria",
        "VAT ID: ATU12345675",
    ]
    for i, line in enumerate(bill_to):
        text(left, y - 12 * (i + 1), line)
    text(left + 90 * mm, y, "Ship to:", "Helvetica-Bold")
    ship_to = ["Alpenblick Hotel, Munich office", "Leopoldstrasse 88", "80802 Munich, Germany"]
    for i, line in enumerate(ship_to):
        text(left + 90 * mm, y - 12 * (i + 1), line)

    y -= 12 * (len(bill_to) + 2) + 6
    text(left, y, "We thank you for your order and invoice the following items:")

    # Line items, fully ruled table
    rows = [["Description", "Qty", "Unit price (EUR)", "Amount (EUR)"]]
    subtotal = 0.0
    for desc, qty, unit in INVOICE_ITEMS:
        amount = round(qty * unit, 2)
        subtotal += amount
        rows.append([desc, str(qty), money(unit), money(amount)])
    subtotal = round(subtotal, 2)
    vat = round(subtotal * VAT_RATE, 2)
    total = round(subtotal + vat, 2)
    width = right - left
    table = Table(
        rows,
        colWidths=[width - 95 * mm, 20 * mm, 37 * mm, 38 * mm],
        rowHeights=17,
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.7, colors.black),
                ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.88, 0.88, 0.88)),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9.5),
                ("FONT", (0, 1), (-1, -1), "Helvetica", 9.5),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    _, table_h = table.wrapOn(c, width, PAGE_H)
    y -= 10 + table_h
    table.drawOn(c, left, y)

    # Totals
    tx_label, tx_value = right - 60 * mm, right - 2 * mm
    y -= 18
    text(tx_label, y, "Subtotal")
    text_right(tx_value, y, f"EUR {money(subtotal)}")
    y -= 13
    text(tx_label, y, f"VAT {VAT_RATE * 100:.0f}%")
    text_right(tx_value, y, f"EUR {money(vat)}")
    c.setLineWidth(0.7)
    c.line(tx_label, y - 5, right, y - 5)
    y -= 18
    text(tx_label, y, "Total", "Helvetica-Bold", 11)
    text_right(tx_value, y, f"EUR {money(total)}", "Helvetica-Bold", 11)

    # Payment terms and bank details
    y -= 30
    text(left, y, f"Please pay \u20ac {money(total)} by 03.12.2026 without deduction, quoting INV-2026-00417.")
    text(left, y - 13, "Payment terms: 30 days net. Goods remain our property until paid in full.")
    y -= 38
    text(left, y, "Bank details", "Helvetica-Bold")
    text(left, y - 13, "Bank: Hamburger Handelsbank AG")
    text(left, y - 26, f"IBAN: {SELLER_IBAN}")
    text(left, y - 39, "BIC: HAHADEHHXXX")
    text(left + 90 * mm, y, "Questions about this invoice?", "Helvetica-Bold")
    text(left + 90 * mm, y - 13, "Contact Jana Petersen")
    text(left + 90 * mm, y - 26, "jana.petersen@nordlicht-office.example")
    text(left + 90 * mm, y - 39, "Phone +49 40 5550 1239")

    # Footer
    c.setLineWidth(0.5)
    c.line(left, 24 * mm, right, 24 * mm)
    footer = [
        "Nordlicht Office Supplies GmbH | Registered office: Hamburg | Register court: Hamburg HRB 123456",
        "Managing directors: Jana Petersen, Tobias Brandt | www.nordlicht-office.example",
    ]
    for i, line in enumerate(footer):
        c.setFont("Helvetica", 7.5)
        c.drawCentredString(PAGE_W / 2, 19 * mm - i * 10, line)
    text_right(right, 11 * mm, "Page 1 of 1", size=7.5)
    c.showPage()
    c.save()
    return buf.getvalue()


# --------------------------------------------------------------------------
# report.pdf

REPORT_LEFT = """
# 1. Summary

Parcel volume across the northern network rose by 8.4 percent against the second quarter, driven
by seasonal retail traffic and two new business customers in the port area. On-time delivery
held at 96.1 percent despite the higher load, and the share of parcels delivered at the first
attempt improved to 91.3 percent.

Operating costs per parcel fell slightly, mainly because route planning now groups stops by
delivery window. Fuel prices remained volatile and are the largest open risk for the fourth
quarter.

# 2. Hubs and sorting

The Hamburg hub processed 1.92 million parcels, its highest quarterly figure so far. The second
sorting line, commissioned in July, ran at 74 percent of its rated capacity by the end of
September. Manual handling of oversized items is still the main bottleneck during the evening
peak.

Bremen and Kiel remained stable. In Kiel a conveyor fault stopped the line for six hours in
August; the backlog was cleared within one shift.
"""

REPORT_RIGHT = """
# 3. Fleet

Twelve electric vans replaced diesel vehicles on inner-city routes. Their average range in daily
service was 182 kilometres, well above the planned 150 kilometres, and no route had to be
shortened. Charging at the depots overnight covered all needs.

Maintenance downtime for the whole fleet fell to 2.7 percent of scheduled hours. Tyre wear on
the new vans is higher than expected and is being monitored.

# 4. People

Headcount grew by 37 to 1,146 employees. Sick leave rose to 5.2 percent in September. The new
shift model for the sorting centres was agreed with the works council and starts in January.

Forty drivers completed the safety and eco-driving course. Accidents per million kilometres fell
from 1.9 to 1.4.
"""

REPORT_PAGE2 = """
# 5. Customers and quality

Complaints per ten thousand parcels dropped from 4.8 to 4.1. Most complaints still concern
missed delivery windows in rural areas, where a single late stop delays the rest of the route. A
pilot with smaller delivery windows and automatic customer notifications started in October in
two districts.

The customer portal now shows live tracking for business accounts. Within six weeks, 212
business customers activated the feature, and calls to the service desk about parcel status fell
by a fifth.

# 6. Outlook for the fourth quarter

We expect the usual peak in November and December, with volumes up to 35 percent above the third
quarter. Temporary staff has been hired for the hubs, and the second sorting line in Hamburg
will run in two shifts from mid-November.

The main risks are fuel prices, the availability of temporary drivers, and the weather in
December. The budget for the year remains unchanged. A detailed plan for next year will be
presented to the board in January.

# 7. Key figures

Parcels handled: 5.41 million (Q2: 4.99 million). On-time delivery: 96.1 percent. First-attempt
delivery: 91.3 percent. Cost per parcel: EUR 2.87 (Q2: EUR 2.91). Employees at the end of the
quarter: 1,146.
"""


def make_report() -> bytes:
    body = ParagraphStyle(
        "body", fontName="Times-Roman", fontSize=10.5, leading=13.5, alignment=TA_JUSTIFY, spaceAfter=7
    )
    heading = ParagraphStyle(
        "heading", fontName="Helvetica-Bold", fontSize=11.5, leading=14, spaceBefore=4, spaceAfter=5
    )
    title = ParagraphStyle("title", fontName="Helvetica-Bold", fontSize=20, leading=24, spaceAfter=6)
    subtitle = ParagraphStyle("subtitle", fontName="Helvetica", fontSize=11, leading=14)

    def flow(text: str) -> list[Paragraph]:
        """Paragraphs separated by blank lines; "# " starts a heading."""
        blocks = [" ".join(block.split()) for block in text.strip().split("\n\n")]
        return [Paragraph(block[2:], heading) if block.startswith("# ") else Paragraph(block, body) for block in blocks]

    margin, gutter = 20 * mm, 10 * mm
    width = PAGE_W - 2 * margin
    col_w = (width - gutter) / 2
    title_h = 32 * mm
    body_top = PAGE_H - margin - title_h
    body_h = body_top - 25 * mm

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 8.5)
        canvas.drawString(margin, 14 * mm, "Northern Parcel Network | Quarterly Operations Report Q3 2026")
        canvas.drawRightString(PAGE_W - margin, 14 * mm, f"Page {doc.page} of 2")
        canvas.restoreState()

    first = PageTemplate(
        id="columns",
        frames=[
            Frame(margin, PAGE_H - margin - title_h, width, title_h, id="title", showBoundary=0),
            Frame(margin, 25 * mm, col_w, body_h, id="left"),
            Frame(margin + col_w + gutter, 25 * mm, col_w, body_h, id="right"),
        ],
        onPage=footer,
    )
    single = PageTemplate(
        id="single",
        frames=[Frame(margin, 25 * mm, width, PAGE_H - margin - 25 * mm, id="body")],
        onPage=footer,
    )
    buf = io.BytesIO()
    doc = BaseDocTemplate(
        buf,
        pagesize=A4,
        pageTemplates=[first, single],
        title="Quarterly Operations Report Q3 2026",
        author="pagestream samples",
        creator="scripts/make_samples.py",
    )
    story = [
        Paragraph("Quarterly Operations Report", title),
        Paragraph("Northern Parcel Network | Third quarter 2026 | Prepared for the management board", subtitle),
        FrameBreak(),
        *flow(REPORT_LEFT),
        FrameBreak(),
        *flow(REPORT_RIGHT),
        NextPageTemplate("single"),
        PageBreak(),
        *flow(REPORT_PAGE2),
        Spacer(1, 6),
    ]
    doc.build(story)
    return buf.getvalue()


# --------------------------------------------------------------------------
# scan-letter.png

LETTER_LINES = [
    ("Helvetica-Bold", 13, "Weber & Sons Garden Design"),
    ("Helvetica", 9, "Lindenallee 7 | 50667 Cologne | info@weber-gardens.example"),
    ("Helvetica", 9, "Phone 0221 555 0180 | www.weber-gardens.example"),
    (None, 0, ""),
    ("Times-Roman", 11, "Mr Daniel Hofmann"),
    ("Times-Roman", 11, "Property Management Rheinblick"),
    ("Times-Roman", 11, "Uferstrasse 45"),
    ("Times-Roman", 11, "53111 Bonn"),
    (None, 0, ""),
    ("Times-Roman", 11, "Cologne, 14 September 2026"),
    (None, 0, ""),
    ("Times-Bold", 11, "Offer 2026-118: new planting for the inner courtyard"),
    (None, 0, ""),
    ("Times-Roman", 11, "Dear Mr Hofmann,"),
    (None, 0, ""),
    ("Times-Roman", 11, "thank you for showing us the courtyard last Tuesday. As agreed, we have"),
    ("Times-Roman", 11, "prepared an offer for new planting that needs little water and stays green"),
    ("Times-Roman", 11, "through the winter. The beds along the north wall get almost no direct sun,"),
    ("Times-Roman", 11, "so we suggest ferns, hostas and evergreen ground cover in that area."),
    (None, 0, ""),
    ("Times-Roman", 11, "The work would take about four days. We would first remove the old shrubs"),
    ("Times-Roman", 11, "and improve the soil with compost, then lay a drip irrigation line and plant"),
    ("Times-Roman", 11, "the beds. The paths remain open to residents during the whole time."),
    (None, 0, ""),
    ("Times-Roman", 11, "Our price for plants, material and labour is 6,480.00 euros including VAT."),
    ("Times-Roman", 11, "The offer is valid until 31 October 2026. If you accept it by then, we can"),
    ("Times-Roman", 11, "start in the second week of November, which is a good time for planting."),
    (None, 0, ""),
    ("Times-Roman", 11, "For the first year we also offer a care contract with eight visits at"),
    ("Times-Roman", 11, "95.00 euros each. Please find the detailed list of plants enclosed."),
    (None, 0, ""),
    ("Times-Roman", 11, "Before we start, we would need access to the water tap in the cellar and a"),
    ("Times-Roman", 11, "place near the entrance where we can store plants and tools for a few days."),
    ("Times-Roman", 11, "Our team will bring its own waste containers and take all green waste away,"),
    ("Times-Roman", 11, "so there will be no extra costs for disposal on your side."),
    (None, 0, ""),
    ("Times-Roman", 11, "If you have any questions, you can reach me at 0221 555 0187."),
    (None, 0, ""),
    ("Times-Roman", 11, "Kind regards,"),
    (None, 0, ""),
    ("Times-Roman", 11, "Martina Weber"),
    ("Times-Roman", 11, "Managing Director"),
    (None, 0, ""),
    ("Times-Roman", 11, "Enclosure: list of plants"),
    (None, 0, ""),
    ("Times-Roman", 11, "P.S. Autumn planting is cheaper: many nurseries give a ten percent discount"),
    ("Times-Roman", 11, "on orders placed before the end of October."),
]


def make_letter_pdf() -> bytes:
    buf, c = new_canvas("Offer 2026-118")
    y = PAGE_H - 25 * mm
    for font, size, line in LETTER_LINES:
        if font is None:
            y -= 8
            continue
        c.setFont(font, size)
        c.drawString(25 * mm, y, line)
        y -= size * 1.45
    c.showPage()
    c.save()
    return buf.getvalue()


def render(pdf_bytes: bytes, dpi: int, page_idx: int = 0) -> Image.Image:
    pdf = pdfium.PdfDocument(pdf_bytes)
    try:
        page = pdf[page_idx]
        image = page.render(scale=dpi / 72).to_pil().convert("L")
        page.close()
    finally:
        pdf.close()
    return image


def scan_look(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A slightly rotated, blurred, noisy grayscale page, as from a scanner."""
    rotated = image.rotate(1.5, resample=Image.Resampling.BICUBIC, fillcolor=255)
    blurred = np.asarray(rotated.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32)
    # paper tone plus sparse sensor noise, quantised so the PNG stays small
    noise = rng.normal(0.0, 6.0, blurred.shape).round() * (rng.random(blurred.shape) < 0.15)
    paper = blurred * (243 / 255)
    out = np.clip(paper + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


# --------------------------------------------------------------------------
# fax.tiff

FAX_PAGES = [
    [
        "FAX MESSAGE",
        "",
        "To: Rheinblick Property Management, Mr Hofmann",
        "From: Weber & Sons Garden Design",
        "Date: 16 September 2026",
        "Pages: 3 including this cover page",
        "",
        "Re: Offer 2026-118, list of plants",
        "",
        "Please find the list of plants on the following pages.",
    ],
    [
        "List of plants, page 1 of 2",
        "",
        "North wall beds",
        "  18 x Hart's tongue fern",
        "  24 x Hosta, blue leaf",
        "  60 x Periwinkle, ground cover",
        "",
        "East beds",
        "  12 x Lavender",
        "  10 x Catmint",
    ],
    [
        "List of plants, page 2 of 2",
        "",
        "Courtyard centre",
        "  1 x Japanese maple, 2.5 m",
        "  40 x Boxwood, 30 cm",
        "",
        "Material",
        "  120 m drip irrigation line",
        "  6 cubic metres of compost",
        "",
        "Total: 6,480.00 EUR including VAT",
    ],
]
FAX_DPI = 200


def make_fax_pdf() -> bytes:
    buf, c = new_canvas("Fax")
    for lines in FAX_PAGES:
        y = PAGE_H - 30 * mm
        for i, line in enumerate(lines):
            font = "Courier-Bold" if i == 0 else "Courier"
            size = 18 if i == 0 else 13
            c.setFont(font, size)
            c.drawString(25 * mm, y, line)
            y -= 22
        c.showPage()
    c.save()
    return buf.getvalue()


def make_fax(path: Path) -> None:
    pdf = make_fax_pdf()
    pages = []
    for page_idx in range(len(FAX_PAGES)):
        gray = np.asarray(render(pdf, FAX_DPI, page_idx))
        # fax machines send black and white: threshold, keep 8-bit gray
        pages.append(Image.fromarray(np.where(gray < 150, 0, 255).astype(np.uint8), mode="L"))
    pages[0].save(
        path,
        format="TIFF",
        save_all=True,
        append_images=pages[1:],
        compression="tiff_lzw",
        dpi=(FAX_DPI, FAX_DPI),
    )


# --------------------------------------------------------------------------
# fixtures


def zero_pages_pdf() -> bytes:
    """A syntactically valid PDF whose page tree has no pages."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def encrypted_pdf(user_password: str = "secret") -> bytes:
    encryption = StandardEncryption(user_password, ownerPassword="owner-secret", strength=128)
    buf, c = new_canvas("Encrypted", encrypt=encryption)
    c.setFont("Helvetica", 14)
    if user_password:
        c.drawString(25 * mm, PAGE_H - 30 * mm, "This document is protected with the password secret.")
    else:
        c.drawString(25 * mm, PAGE_H - 30 * mm, "Encrypted with an empty user password: opens without one.")
    c.showPage()
    c.save()
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_dimensions_png(side: int = 60000) -> bytes:
    """A PNG whose header declares side x side 8-bit gray pixels (3.6 GB
    decoded); the file holds only the first rows, all white."""
    rows = 64
    raw = (b"\x00" + b"\xff" * side) * rows
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def garbage_png(rng: np.random.Generator) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()


def rotated(page: Image.Image, clockwise: int) -> Image.Image:
    """The page scaled to a 1000 px long side, quantised to 32 gray levels
    (a small file) and turned clockwise."""
    scale = 1000 / max(page.size)
    small = page.resize((round(page.width * scale), round(page.height * scale)), Image.Resampling.LANCZOS)
    turn = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    return ImageOps.posterize(small, 5).transpose(turn[clockwise])


def save_png(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", optimize=True)


def main() -> None:
    SAMPLES.mkdir(exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)

    invoice = make_invoice()
    (SAMPLES / "invoice.pdf").write_bytes(invoice)
    report = make_report()
    assert len(pdfium.PdfDocument(report)) == 2, "report.pdf must have two pages"
    (SAMPLES / "report.pdf").write_bytes(report)

    letter = scan_look(render(make_letter_pdf(), 150), rng)
    save_png(letter, SAMPLES / "scan-letter.png")
    truth = [line for font, _, line in LETTER_LINES if font is not None]
    (FIXTURES / "scan-letter.txt").write_text("\n".join(truth) + "\n")
    make_fax(SAMPLES / "fax.tiff")

    (FIXTURES / "truncated.pdf").write_bytes(invoice[: len(invoice) // 2])
    (FIXTURES / "encrypted.pdf").write_bytes(encrypted_pdf())
    (FIXTURES / "owner-password.pdf").write_bytes(encrypted_pdf(user_password=""))
    (FIXTURES / "empty.pdf").write_bytes(b"")
    (FIXTURES / "not-a-document.txt").write_text(
        "This is a plain text file, not a PDF or an image.\nIt must be rejected by the split stage.\n"
    )
    (FIXTURES / "garbage.png").write_bytes(garbage_png(rng))
    (FIXTURES / "zero-pages.pdf").write_bytes(zero_pages_pdf())
    (FIXTURES / "huge-dimensions.png").write_bytes(huge_dimensions_png())
    for clockwise in (90, 180, 270):
        save_png(rotated(letter, clockwise), FIXTURES / f"rotated-{clockwise}.png")

    for folder in (SAMPLES, FIXTURES):
        for path in sorted(folder.iterdir()):
            print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

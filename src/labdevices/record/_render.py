"""Render a batch record (the dict of ``collect_record``) as JSON, HTML or PDF: data in, bytes out.

HTML and PDF lay out the same sections, so what an inspector reads on paper is
what the electronic copy (JSON) holds.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any

from ._plots import telemetry_plots

__all__ = ["Section", "render_html", "render_json", "render_pdf", "sections"]


@dataclass
class Section:
    """One part of the record: a key/value table (``headers`` empty) or a table with headers."""

    title: str
    rows: list[list[str]]
    headers: list[str] = field(default_factory=list)
    note: str = ""
    #: relative column widths of a table with headers (equal when empty)
    widths: tuple[float, ...] = ()


#: key/value rows whose value is a hash, set in a fixed-width font
MONO_KEYS = frozenset({"G-code SHA-256", "Content SHA-256"})


def render_json(record: dict[str, Any]) -> bytes:
    """The electronic copy: the whole record, keys sorted, UTF-8."""
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _s(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _time(iso: str | None) -> str:
    """ISO UTC text as printed: ``2026-11-26 13:45:12.123 UTC``."""
    if not iso:
        return "—"
    text = iso.replace("T", " ").removesuffix("Z")
    return text[:23] + " UTC"  # milliseconds


def _stamp(iso: str | None) -> str:
    """ISO UTC text in a table whose header says UTC: ``2026-11-26 13:45:12.123``."""
    return _time(iso).removesuffix(" UTC")


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    minutes, secs = divmod(float(seconds), 60.0)
    return f"{int(minutes)} min {secs:04.1f} s" if minutes else f"{secs:.1f} s"


def title(record: dict[str, Any]) -> str:
    return f"Batch record — print job {record['job']['id']}"


def footer(record: dict[str, Any]) -> str:
    job = record["job"]
    return (
        f"job {job['id']} · content SHA-256 {job['content_sha256']} · "
        "electronic copy: JSON (labdevices record --json)"
    )


def sections(record: dict[str, Any]) -> list[Section]:
    """The record's parts, in reading order, as text (shared by HTML and PDF)."""
    job, printer, ver = record["job"], record["printer"], record["verification"]
    out = [
        Section(
            "1. Identification",
            [
                ["Job", f"{job['id']}" + (f" ({job['name']})" if job["name"] else "")],
                ["Batch", _s(job["batch_id"])],
                ["Patient", _s(job["patient_id"])],
                ["State", job["state"] + (f" — {job['error']}" if job["error"] else "")],
                [
                    "Submitted by",
                    f"{job['submitted_by_name']} ({job['submitted_by']})"
                    if job.get("submitted_by_name")
                    else _s(job["submitted_by"]),
                ],
                [
                    "GMP release",
                    "required (supervisor signature, two-person rule)"
                    if job["release_required"]
                    else "not required on this printer",
                ],
            ],
        ),
        Section(
            "2. Materials (bioinks)",
            [
                [
                    _s(b.get("tool")),
                    _s(b.get("name")),
                    _s(b.get("lot")),
                    _s(b.get("cell_density_per_ml")),
                ]
                for b in record["bioinks"]
                if isinstance(b, dict)
            ]
            or [["—", "none recorded", "—", "—"]],
            headers=["tool", "bioink", "lot", "cells / mL"],
            widths=(0.4, 2.0, 1.4, 1.0),
        ),
    ]
    fw = printer["firmware"]
    firmware = (
        " ".join(
            v
            for v in (
                fw.get("FIRMWARE_NAME"),
                f"({fw['MACHINE_TYPE']})" if fw.get("MACHINE_TYPE") else None,
            )
            if v
        )
        or "— (not reported)"
    )
    out.append(
        Section(
            "3. Equipment",
            [
                ["Printer", printer["device"]],
                ["Profile", _s(printer["profile"])],
                ["Firmware", firmware],
            ],
        )
    )
    out.append(
        Section(
            "4. Program and execution",
            [
                ["G-code SHA-256", _s(job["gcode_sha256"])],
                ["Content SHA-256", _s(job["content_sha256"])],
                ["Lines", f"{job['lines_printed']} printed of {job['lines_planned']} planned"],
                [
                    "Duration",
                    f"{_duration(job['duration_s'])} (planned {_duration(job['duration_planned_s'])})",
                ],
                ["Created", _time(job["created_at"])],
                ["Started", _time(job["started_at"])],
                ["Ended", _time(job["ended_at"])],
            ],
            note="The content SHA-256 covers printer, profile, batch, patient, bioinks with "
            "lots, the job spec and the G-code hash; every signature below binds it.",
        )
    )
    sigs = record["signatures"]
    out.append(
        Section(
            "5. Electronic signatures",
            [
                [
                    s["full_name"],
                    s["user_id"],
                    _stamp(s["time"]),
                    s["meaning"],
                    _s(s["comment"]),
                    "yes" if s["matches_content"] else "NO",
                ]
                for s in sigs
            ]
            or [["none", "—", "—", "—", "—", "—"]],
            headers=["printed name", "user", "time (UTC)", "meaning", "comment", "binds content"],
            widths=(1.3, 0.8, 1.5, 1.1, 1.6, 0.7),
            note="Each signer re-entered user id and password at signing (21 CFR 11.200); "
            + "; ".join(f"signature {s['id']}: {s['manifestation']}" for s in sigs),
        )
    )
    out.append(
        Section(
            "6. State transitions",
            [
                [
                    _stamp(t["time"]),
                    t["actor"],
                    f"{t['from'] or 'new'} → {t['to']}",
                    _s(t["line"]),
                    _s(t["reason"]) + (f" [{t['error']}]" if t["error"] else ""),
                    str(t["seq"]),
                ]
                for t in record["transitions"]
            ],
            headers=["time (UTC)", "actor", "state", "line", "reason", "audit #"],
            widths=(1.5, 0.8, 1.4, 0.5, 2.3, 0.6),
        )
    )
    out.append(
        Section(
            "7. Alarms during the job",
            [
                [
                    _stamp(a["raised_at"]),
                    a["device"],
                    a["name"],
                    a["severity"],
                    _stamp(a["cleared_at"]),
                    _s(a["acknowledged_by"]),
                ]
                for a in record["alarms"]
            ]
            or [["none", "—", "—", "—", "—", "—"]],
            headers=[
                "raised (UTC)",
                "device",
                "alarm",
                "severity",
                "cleared (UTC)",
                "acknowledged by",
            ],
            widths=(1.5, 0.9, 1.4, 0.8, 1.5, 1.0),
        )
    )
    tele_rows = [
        [device, name, _s(s["unit"]), str(s["count"]), _s(s["min"]), _s(s["mean"]), _s(s["max"])]
        for device, dev in record["telemetry"]["devices"].items()
        for name, s in dev["signals"].items()
    ]
    out.append(
        Section(
            "8. Telemetry",
            tele_rows or [["none", "—", "—", "—", "—", "—", "—"]],
            headers=["device", "signal", "unit", "samples", "min", "mean", "max"],
            widths=(1.0, 1.7, 0.6, 0.7, 0.8, 0.8, 0.8),
            note=f"From {_time(record['telemetry']['start'])} to "
            f"{_time(record['telemetry']['end'])}.",
        )
    )
    cp = ver["checkpoint"]
    if ver["ok"]:
        trail = f"verified: {ver['records']} records, every covered table and row checked"
    else:
        shown = "; ".join(ver["problems"][:3]) or "see labdevices audit verify"
        trail = f"PROBLEMS FOUND: {shown}"
    if cp is None:
        anchored = (
            f"no checkpoint yet covers this job's records (its last is record "
            f"{ver['job_last_seq']}; checkpoints reach record {ver['anchored_seq']})"
        )
    else:
        anchored = (
            f"checkpoint {cp['number']} ({cp['origin']}, size {cp['size']}, {cp['time']}) "
            f"covers the job's last record {ver['job_last_seq']}; "
            + (
                "its signature and the chain up to it verified"
                if cp["verified"]
                else "its signature is NOT verified (no public key, or problems above)"
            )
        )
    out.append(
        Section(
            "9. Verification",
            [
                ["Audit trail", trail],
                ["Chain head", f"record {ver['head_seq']}, {ver['head_hash']}"],
                [
                    "Signing key",
                    f"Ed25519 {ver['key_fingerprint']}"
                    if ver["key_fingerprint"]
                    else "no public key given: checkpoints not trusted",
                ],
                ["Checkpoint", anchored],
                [
                    "Witness",
                    f"{ver['witnessed']} checkpoints in {ver['witness']}"
                    if ver["witness"]
                    else "no witness copy checked",
                ],
                [
                    "Job content",
                    "matches its content SHA-256 (recomputed from the stored job)"
                    if ver["content_ok"]
                    else "DOES NOT MATCH its content SHA-256: the job was changed after "
                    f"it was recorded (now {ver['content_sha256_recomputed']})",
                ],
            ],
            note=" ".join(ver["notes"]),
        )
    )
    return out


# ---- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 10pt; color: #111; max-width: 60em;
       margin: 2em auto; }
h1 { font-size: 16pt; margin-bottom: 0; } h2 { font-size: 12pt; margin: 1.4em 0 .4em;
     border-bottom: 1px solid #1f4e79; color: #1f4e79; }
table { border-collapse: collapse; width: 100%; } td, th { border: 1px solid #bbb;
        padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #e8eef5; } td.k { width: 12em; font-weight: bold; background: #f5f7fa; }
.mono { font-family: Courier, monospace; font-size: 8.5pt; } .note { color: #444; font-size: 8.5pt; }
footer { margin-top: 2em; color: #555; font-size: 8pt; border-top: 1px solid #bbb; }
img { max-width: 100%; }
"""


def render_html(record: dict[str, Any]) -> bytes:
    """A self-contained page (styles and plots inline)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title(record))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title(record))}</h1>",
        f"<p class='note'>generated {e(_time(record['generated_at']))} from "
        f"{e(record['store']['path'])}</p>",
    ]
    plots = telemetry_plots(record)
    for sec in sections(record):
        parts.append(f"<h2>{e(sec.title)}</h2><table>")
        if sec.headers:
            parts.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in sec.headers) + "</tr>")
            for row in sec.rows:
                parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        else:
            for key, value in sec.rows:
                cls = " class='mono'" if key in MONO_KEYS else ""
                parts.append(f"<tr><td class='k'>{e(key)}</td><td{cls}>{e(value)}</td></tr>")
        parts.append("</table>")
        if sec.note:
            parts.append(f"<p class='note'>{e(sec.note)}</p>")
        if sec.title.endswith("Telemetry"):
            for device, png in plots.items():
                data = base64.b64encode(png).decode()
                parts.append(
                    f"<p><img alt='{e(device)} telemetry' src='data:image/png;base64,{data}'></p>"
                )
    parts.append(f"<footer>{e(footer(record))}</footer></body></html>\n")
    return "".join(parts).encode()


# ---- PDF -------------------------------------------------------------------------------------


def render_pdf(record: dict[str, Any]) -> bytes:
    """An A4 document: title, numbered sections, tables, plots, page numbers, a footer
    with the job's content hash and where the electronic copy is."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import (
        Image,
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=styles["BodyText"], fontSize=8.5, leading=10.5)
    mono = ParagraphStyle("mono", parent=body, fontName="Courier", fontSize=7.5, leading=9.5)
    head = ParagraphStyle("head", parent=body, fontName="Helvetica-Bold")
    note = ParagraphStyle("note", parent=body, fontSize=7.5, leading=9.5, textColor="#444444")
    h1 = ParagraphStyle("h1", parent=styles["Title"], fontSize=16, alignment=0, spaceAfter=2)
    h2 = ParagraphStyle(
        "h2", parent=styles["Heading2"], fontSize=11, textColor="#1f4e79", spaceBefore=8
    )
    blue = colors.HexColor("#1f4e79")
    e = html.escape
    width = A4[0] - 36 * mm
    foot = footer(record)
    job = record["job"]

    class NumberedCanvas(Canvas):  # type: ignore[misc]
        """Draws header and footer once the page count is known ("page 2 of 3")."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            self.saveState()
            self.setStrokeColor(blue)
            self.setLineWidth(0.6)
            top = A4[1] - 12 * mm
            self.line(18 * mm, top, A4[0] - 18 * mm, top)
            self.setFont("Helvetica", 7.5)
            self.drawString(
                18 * mm,
                top + 2 * mm,
                f"labdevices batch record · batch {job['batch_id'] or '—'} · "
                f"patient {job['patient_id'] or '—'}",
            )
            self.drawRightString(A4[0] - 18 * mm, top + 2 * mm, f"job {job['id']}")
            self.line(18 * mm, 14 * mm, A4[0] - 18 * mm, 14 * mm)
            self.setFont("Helvetica", 6.5)
            self.drawString(18 * mm, 10 * mm, foot)
            self.setFont("Helvetica", 7.5)
            self.drawRightString(A4[0] - 18 * mm, 6 * mm, f"page {self._pageNumber} of {total}")
            self.restoreState()

    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#b0b0b0")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
    )

    def cell(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(e(text), style)

    story: list[Any] = [
        Paragraph(e(title(record)), h1),
        Paragraph(
            e(
                f"Batch {job['batch_id'] or '—'} · patient {job['patient_id'] or '—'} · "
                f"generated {_time(record['generated_at'])} from {record['store']['path']}"
            ),
            note,
        ),
    ]
    plots = telemetry_plots(record, dpi=150)
    for sec in sections(record):
        block: list[Any] = [Paragraph(e(sec.title), h2)]
        if sec.headers:
            n = len(sec.headers)
            data = [[cell(h, head) for h in sec.headers]]
            data += [[cell(c) for c in row] for row in sec.rows]
            rel = sec.widths or (1.0,) * n
            table = Table(data, colWidths=[width * w / sum(rel) for w in rel], repeatRows=1)
            table.setStyle(grid)
            table.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, 0), "#e8eef5")]))
        else:
            data = [
                [
                    cell(k, head),
                    cell(v, mono if k in MONO_KEYS else body),
                ]
                for k, v in sec.rows
            ]
            table = Table(data, colWidths=[34 * mm, width - 34 * mm])
            table.setStyle(grid)
            table.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), "#f5f7fa")]))
        block.append(table)
        if sec.note:
            block += [Spacer(1, 2), Paragraph(e(sec.note), note)]
        story.append(KeepTogether(block) if len(sec.rows) < 25 else block[0])
        if len(sec.rows) >= 25:
            story += block[1:]
        if sec.title.endswith("Telemetry"):
            for png in plots.values():
                img = Image(io.BytesIO(png))
                scale = width / img.drawWidth
                img.drawWidth, img.drawHeight = width, img.drawHeight * scale
                story += [Spacer(1, 4), img]

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=title(record),
        author="labdevices",
        subject=f"batch {job['batch_id']}, patient {job['patient_id']}",
        invariant=1,
    )
    doc.build(story, canvasmaker=NumberedCanvas)
    return buf.getvalue()

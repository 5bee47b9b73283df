"""The batch record (21 CFR 11.10(b)): one job's record as an inspector reads it.

``collect_record(db, job_id)`` gathers it from the store as a dict (the electronic
copy, ``render_json``); ``render_html`` and ``render_pdf`` lay the same sections out
for people. The renderers are pure: a record in, bytes out.
"""

from ._collect import FORMAT, collect_record, utc, verification
from ._render import Section, render_html, render_json, render_pdf, sections

__all__ = [
    "FORMAT",
    "Section",
    "collect_record",
    "render_html",
    "render_json",
    "render_pdf",
    "sections",
    "utc",
    "verification",
]

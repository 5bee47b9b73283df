"""G-code emission: a numba kernel lays out the command records, numpy formats them all at once.

The kernel walks layers and paths once and writes flat records — a motion
(G0/G1/G4 with optional X Y Z E F P fields) or a reference into a table of
literal dialect commands (valve, tool select, layer hooks). A second kernel
writes the characters (its numpy reference does it with integer arithmetic on
whole columns), so no Python code runs per segment.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from labdevices.toolpath._kernel import kernel

__all__ = [
    "EmitInputs",
    "LiteralTable",
    "Travel",
    "build_program",
    "format_records",
    "format_records_ref",
    "render_body",
    "to_ascii",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]

# record fields and how many decimals each is written with
_FIELDS = (b" X", b" Y", b" Z", b" E", b" F", b" P")
_DECIMALS = (3, 3, 3, 5, 0, 0)
_CHUNK = 200_000  # records formatted at once: bounds the character matrices' memory
NAN = np.nan


# what Unicode decomposition does not turn into ASCII by itself
_ASCII = str.maketrans(
    {
        "µ": "u",
        "μ": "u",
        "°": " deg",
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "–": "-",
        "—": "-",
        "−": "-",
        "×": "x",
        "·": ".",
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "τ": "tau",
        "γ": "gamma",
        "Δ": "d",
        "≤": "<=",
        "≥": ">=",
    }
)


def to_ascii(text: str) -> str:
    """ASCII transliteration for firmware that reads only ASCII: ü → u, µ → u, … → ..., ° → deg.

    Characters with no ASCII spelling become '?'.
    """
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.encode("ascii", "replace").decode("ascii")


class LiteralTable:
    """Dialect commands used verbatim, each stored once and referenced by id.

    ``encoding`` "ascii" transliterates (``to_ascii``); "utf-8" keeps every character.
    """

    def __init__(self, encoding: str = "ascii") -> None:
        self._ids: dict[str, int] = {}
        self.texts: list[bytes] = []
        self.encoding = encoding

    def add(self, text: str | None) -> int:
        """Id of ``text`` (lines joined by newlines); -1 for None or empty."""
        if not text:
            return -1
        if text not in self._ids:
            self._ids[text] = len(self.texts)
            line = text.rstrip("\n") + "\n"
            if self.encoding == "ascii":
                line = to_ascii(line)
            self.texts.append(line.encode(self.encoding))
        return self._ids[text]


@dataclass
class EmitInputs:
    """Everything ``build_program`` needs, as flat arrays.

    Points of every layer are stacked in ``xy``; closed paths repeat their first
    point at the end. ``seg_feed``/``seg_e`` are indexed by the segment's first
    point. Per tool: ``piston``, ``offset`` (subtracted from coordinates) and the
    literal ids of select / valve open / valve close.
    """

    xy: F64
    pstart: I64
    layer_pstart: I64
    layer_z: F64
    p_tool: I32
    seg_feed: F64  # mm/min
    seg_e: F64  # mm of plunger
    p_lag_mm: F64
    p_lead_ms: F64
    p_dwell_ms: F64
    p_drop_e: F64
    p_drop_feed: F64
    p_lift: npt.NDArray[np.bool_]  # the travel to this path lifts the nozzle
    tool_piston: npt.NDArray[np.bool_]
    tool_offset: F64
    lit_select: I32
    lit_open: I32
    lit_close: I32
    layer_lit_start: I32
    layer_lit_end: I32
    lift_mm: float
    travel_feed: float  # mm/min
    z_feed: float  # mm/min

    def program_args(self) -> tuple[Any, ...]:
        """The arguments of ``build_program`` (and of its plain-Python reference), in order."""
        i = self
        return (
            i.xy,
            i.pstart,
            i.layer_pstart,
            i.layer_z,
            i.p_tool,
            i.seg_feed,
            i.seg_e,
            i.p_lag_mm,
            i.p_lead_ms,
            i.p_dwell_ms,
            i.p_drop_e,
            i.p_drop_feed,
            i.p_lift,
            i.tool_piston,
            i.tool_offset,
            i.lit_select,
            i.lit_open,
            i.lit_close,
            i.layer_lit_start,
            i.layer_lit_end,
            float(i.lift_mm),
            float(i.travel_feed),
            float(i.z_feed),
        )


@kernel("b1(f8, f8)")
def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6  # NaN never equals: an unknown position forces a move


@kernel("none(i1[::1], f8[:, ::1], i4[::1], i8, i8)")
def _rec(code: npt.NDArray[np.int8], vals: F64, lit: I32, r: int, c: int) -> None:
    code[r] = c
    vals[r, :] = np.nan
    lit[r] = -1


@kernel(
    "Tuple((i1[::1], f8[:, ::1], i4[::1], f8, f8, f8, f8))(f8[:, ::1], i8[::1], i8[::1], f8[::1], i4[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], b1[::1], b1[::1], f8[:, ::1], i4[::1], i4[::1], i4[::1], i4[::1], i4[::1], f8, f8, f8)"
)
def build_program(
    xy: F64,
    pstart: I64,
    layer_pstart: I64,
    layer_z: F64,
    p_tool: I32,
    seg_feed: F64,
    seg_e: F64,
    p_lag_mm: F64,
    p_lead_ms: F64,
    p_dwell_ms: F64,
    p_drop_e: F64,
    p_drop_feed: F64,
    p_lift: npt.NDArray[np.bool_],
    tool_piston: npt.NDArray[np.bool_],
    tool_offset: F64,
    lit_select: I32,
    lit_open: I32,
    lit_close: I32,
    layer_lit_start: I32,
    layer_lit_end: I32,
    lift_mm: float,
    travel_feed: float,
    z_feed: float,
) -> tuple[npt.NDArray[np.int8], F64, I32, float, float, float, float]:
    """Records (code, values, literal id), travel time and dwell time [s], XY travel and Z lift [mm].

    Code -1 literal, 0 G0, 1 G1, 4 G4; values X Y Z E F P, NaN = absent. Travel
    time is distance over feed without acceleration. A travel lifts by ``lift_mm``
    where ``p_lift`` says so; otherwise it moves straight (rising to a new layer).
    Z lift counts the up and down moves of lifts.
    """
    n_pts = xy.shape[0]
    n_paths = p_tool.shape[0]
    n_layers = layer_z.shape[0]
    # every point at most one move; per path: select, 3 travel moves, open, lead,
    # split move or droplet, close; per layer: two hooks
    cap = n_pts + 9 * n_paths + 2 * n_layers + 8
    code = np.empty(cap, np.int8)
    vals = np.empty((cap, 6))
    lit = np.empty(cap, np.int32)
    travel_s = 0.0
    dwell_s = 0.0
    travel_xy = 0.0
    lift_z = 0.0
    r = 0
    cur_tool = -1
    cx = np.nan
    cy = np.nan
    cz = np.nan
    cf = np.nan
    for li in range(n_layers):
        if layer_lit_start[li] >= 0:
            _rec(code, vals, lit, r, -1)
            lit[r] = layer_lit_start[li]
            r += 1
        for i in range(layer_pstart[li], layer_pstart[li + 1]):
            t = p_tool[i]
            ox = tool_offset[t, 0]
            oy = tool_offset[t, 1]
            oz = tool_offset[t, 2]
            piston = tool_piston[t]
            if t != cur_tool:
                if lit_select[t] >= 0:
                    _rec(code, vals, lit, r, -1)
                    lit[r] = lit_select[t]
                    r += 1
                cur_tool = t
            a = pstart[i]
            b = pstart[i + 1]
            x0 = xy[a, 0] - ox
            y0 = xy[a, 1] - oy
            z0 = layer_z[li] - oz
            if not (_close(cx, x0) and _close(cy, y0) and _close(cz, z0)):
                if not np.isnan(cx):
                    travel_xy += np.hypot(x0 - cx, y0 - cy)
                if lift_mm > 0.0 and p_lift[i]:
                    zl = z0 + lift_mm
                    if not np.isnan(cz) and cz > z0:
                        zl = cz + lift_mm
                    if not np.isnan(cx):
                        lift_z += abs(zl - cz) + abs(zl - z0)
                        travel_s += (abs(zl - cz) + abs(zl - z0)) * 60.0 / z_feed + np.hypot(
                            x0 - cx, y0 - cy
                        ) * 60.0 / travel_feed
                    _rec(code, vals, lit, r, 0)
                    vals[r, 2] = zl
                    vals[r, 4] = z_feed
                    r += 1
                    _rec(code, vals, lit, r, 0)
                    vals[r, 0] = x0
                    vals[r, 1] = y0
                    vals[r, 4] = travel_feed
                    r += 1
                    _rec(code, vals, lit, r, 0)
                    vals[r, 2] = z0
                    vals[r, 4] = z_feed
                    r += 1
                else:
                    if not np.isnan(cx):
                        dz = abs(z0 - cz)
                        dxy = np.hypot(x0 - cx, y0 - cy)
                        # the move is limited by whichever axis takes longer
                        travel_s += max(dxy * 60.0 / travel_feed, dz * 60.0 / z_feed)
                    _rec(code, vals, lit, r, 0)
                    vals[r, 0] = x0
                    vals[r, 1] = y0
                    vals[r, 2] = z0
                    vals[r, 4] = travel_feed
                    r += 1
                cx = x0
                cy = y0
                cz = z0
                cf = np.nan
            if not piston and lit_open[t] >= 0:
                _rec(code, vals, lit, r, -1)
                lit[r] = lit_open[t]
                r += 1
            if not piston and p_lead_ms[i] > 0.0:
                _rec(code, vals, lit, r, 4)
                vals[r, 5] = p_lead_ms[i]
                dwell_s += p_lead_ms[i] / 1000.0
                r += 1
            valve_closed = piston
            if b - a == 1:
                if piston:
                    _rec(code, vals, lit, r, 1)
                    vals[r, 3] = p_drop_e[i]
                    vals[r, 4] = p_drop_feed[i]
                    cf = p_drop_feed[i]
                    r += 1
                elif p_dwell_ms[i] > 0.0:
                    _rec(code, vals, lit, r, 4)
                    vals[r, 5] = p_dwell_ms[i]
                    dwell_s += p_dwell_ms[i] / 1000.0
                    r += 1
            else:
                total = 0.0
                for j in range(a, b - 1):
                    total += np.hypot(xy[j + 1, 0] - xy[j, 0], xy[j + 1, 1] - xy[j, 1])
                lag = 0.0 if piston else min(p_lag_mm[i], total)
                done = 0.0
                for j in range(a, b - 1):
                    seg = np.hypot(xy[j + 1, 0] - xy[j, 0], xy[j + 1, 1] - xy[j, 1])
                    if seg < 1e-9:
                        continue
                    xe = xy[j + 1, 0] - ox
                    ye = xy[j + 1, 1] - oy
                    f = seg_feed[j]
                    rem_after = total - done - seg
                    if lag > 0.0 and not valve_closed and rem_after < lag:
                        frac = 1.0 - (lag - rem_after) / seg
                        if frac > 1e-6:
                            _rec(code, vals, lit, r, 1)
                            vals[r, 0] = cx + frac * (xe - cx)
                            vals[r, 1] = cy + frac * (ye - cy)
                            if f != cf:
                                vals[r, 4] = f
                                cf = f
                            r += 1
                        _rec(code, vals, lit, r, -1)
                        lit[r] = lit_close[t]
                        r += 1
                        valve_closed = True
                    _rec(code, vals, lit, r, 1)
                    vals[r, 0] = xe
                    vals[r, 1] = ye
                    if piston:
                        vals[r, 3] = seg_e[j]
                    if f != cf:
                        vals[r, 4] = f
                        cf = f
                    r += 1
                    cx = xe
                    cy = ye
                    done += seg
            if not valve_closed and lit_close[t] >= 0:
                _rec(code, vals, lit, r, -1)
                lit[r] = lit_close[t]
                r += 1
        if layer_lit_end[li] >= 0:
            _rec(code, vals, lit, r, -1)
            lit[r] = layer_lit_end[li]
            r += 1
    return code[:r], vals[:r], lit[:r], travel_s, dwell_s, travel_xy, lift_z


def _digits(q: I64, n: int) -> npt.NDArray[np.uint8]:
    pw = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    return ((q[:, None] // pw) % 10 + 48).astype(np.uint8)


def _number(v: F64, decimals: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Characters and mask of each value: minimal digits, trailing zeros stripped; NaN → nothing."""
    finite = ~np.isnan(v)
    scale = 10**decimals
    q = np.rint(np.abs(np.where(finite, v, 0.0)) * scale).astype(np.int64)
    neg = (v < 0) & (q > 0)
    ip = q // scale
    fp = q % scale
    nint = len(str(int(ip.max()))) if ip.size else 1
    cols = [np.full((len(v), 1), ord("-"), np.uint8), _digits(ip, nint)]
    pw = 10 ** np.arange(nint - 1, -1, -1, dtype=np.int64)
    masks = [neg[:, None], (ip[:, None] >= pw) | (np.arange(nint) == nint - 1)]
    if decimals:
        cols += [np.full((len(v), 1), ord("."), np.uint8), _digits(fp, decimals)]
        keep = 10 ** (decimals - np.arange(decimals, dtype=np.int64))
        masks += [(fp != 0)[:, None], (fp[:, None] % keep) != 0]
    return np.hstack(cols), np.hstack(masks) & finite[:, None]


def _format_motion(code: npt.NDArray[np.int8], vals: F64) -> tuple[npt.NDArray[np.uint8], I64]:
    """Bytes of motion records (concatenated, each ending in a newline) and each record's length."""
    n = len(code)
    cols = [np.column_stack([np.full(n, ord("G"), np.uint8), (code + 48).astype(np.uint8)])]
    masks = [np.ones((n, 2), bool)]
    for k, (prefix, dec) in enumerate(zip(_FIELDS, _DECIMALS, strict=True)):
        present = ~np.isnan(vals[:, k])
        if not present.any():
            continue
        cols.append(np.tile(np.frombuffer(prefix, np.uint8), (n, 1)))
        masks.append(np.repeat(present[:, None], len(prefix), axis=1))
        c, m = _number(vals[:, k], dec)
        cols.append(c)
        masks.append(m)
    cols.append(np.full((n, 1), ord("\n"), np.uint8))
    masks.append(np.ones((n, 1), bool))
    chars = np.hstack(cols)
    mask = np.hstack(masks)
    return chars[mask], mask.sum(axis=1).astype(np.int64)


def _scatter(
    out: npt.NDArray[np.uint8],
    dest_start: I64,
    lens: I64,
    src: npt.NDArray[np.uint8],
    src_start: I64,
) -> None:
    """Copy ``lens[i]`` bytes from ``src[src_start[i]:]`` to ``out[dest_start[i]:]``, all at once."""
    total = int(lens.sum())
    if total == 0:
        return
    run = np.repeat(np.cumsum(lens) - lens, lens)
    within = np.arange(total, dtype=np.int64) - run
    out[np.repeat(dest_start, lens) + within] = src[np.repeat(src_start, lens) + within]


def format_records_ref(
    code: npt.NDArray[np.int8], vals: F64, lit: I32, table: LiteralTable
) -> bytes:
    """Numpy reference of ``format_records``: whole columns of numbers turned into characters."""
    n = len(code)
    if n == 0:
        return b""
    is_lit = code < 0
    buf = np.frombuffer(b"".join(table.texts), np.uint8) if table.texts else np.zeros(0, np.uint8)
    tab_len = np.array([len(t) for t in table.texts], np.int64)
    tab_off = np.cumsum(tab_len) - tab_len
    lens = np.zeros(n, np.int64)
    lit_rows = np.flatnonzero(is_lit)
    lens[lit_rows] = tab_len[lit[lit_rows]]
    mot_rows = np.flatnonzero(~is_lit)
    chunks = []
    for s in range(0, len(mot_rows), _CHUNK):
        rows = mot_rows[s : s + _CHUNK]
        data, ln = _format_motion(code[rows], vals[rows])
        lens[rows] = ln
        chunks.append((rows, data, ln))
    start = np.cumsum(lens) - lens
    out = np.empty(int(lens.sum()), np.uint8)
    _scatter(out, start[lit_rows], lens[lit_rows], buf, tab_off[lit[lit_rows]])
    for rows, data, ln in chunks:
        _scatter(out, start[rows], ln, data, np.cumsum(ln) - ln)
    return out.tobytes()


_DEC = np.array(_DECIMALS, np.int64)
_PREFIX = np.frombuffer(b"".join(_FIELDS), np.uint8).reshape(-1, 2).copy()
_POW10 = 10 ** np.arange(19, dtype=np.int64)


@kernel(
    "u1[::1](i1[::1], f8[:, ::1], i4[::1], Array(u1, 1, 'C', readonly=True), i8[::1], i8[::1], i8)"
)
def _format_kernel(
    code: npt.NDArray[np.int8],
    vals: F64,
    lit: I32,
    buf: npt.NDArray[np.uint8],
    tab_off: I64,
    tab_len: I64,
    cap: int,
) -> npt.NDArray[np.uint8]:
    out = np.empty(cap, np.uint8)
    digits = np.empty(20, np.uint8)
    pos = 0
    for r in range(code.shape[0]):
        c = code[r]
        if c < 0:
            a = tab_off[lit[r]]
            for j in range(tab_len[lit[r]]):
                out[pos] = buf[a + j]
                pos += 1
            continue
        out[pos] = 71  # G
        out[pos + 1] = 48 + c
        pos += 2
        for k in range(6):
            v = vals[r, k]
            if np.isnan(v):
                continue
            out[pos] = _PREFIX[k, 0]
            out[pos + 1] = _PREFIX[k, 1]
            pos += 2
            dec = _DEC[k]
            scale = _POW10[dec]
            q = np.int64(np.rint(abs(v) * scale))
            if v < 0 and q > 0:
                out[pos] = 45  # -
                pos += 1
            ip = q // scale
            fp = q % scale
            nd = 0
            while True:
                digits[nd] = 48 + ip % 10
                nd += 1
                ip //= 10
                if ip == 0:
                    break
            for j in range(nd - 1, -1, -1):
                out[pos] = digits[j]
                pos += 1
            if fp != 0:
                out[pos] = 46  # .
                pos += 1
                while fp % 10 == 0:
                    fp //= 10
                    dec -= 1
                for j in range(dec - 1, -1, -1):
                    out[pos + j] = 48 + fp % 10
                    fp //= 10
                pos += dec
        out[pos] = 10
        pos += 1
    return out[:pos]


def format_records(code: npt.NDArray[np.int8], vals: F64, lit: I32, table: LiteralTable) -> bytes:
    """The G-code text of the records, one command per line (literals may hold several lines).

    A numba kernel writes the characters straight into one buffer;
    ``format_records_ref`` does the same with numpy column arithmetic.
    """
    if len(code) == 0:
        return b""
    buf = np.frombuffer(b"".join(table.texts), np.uint8) if table.texts else np.zeros(1, np.uint8)
    tab_len = np.array([len(t) for t in table.texts] or [0], np.int64)
    tab_off = np.cumsum(tab_len) - tab_len
    is_lit = code < 0
    # generous bound: 3 bytes per motion line + 24 per field present, literals as stored
    present = vals.size - int(np.count_nonzero(np.isnan(vals)))
    cap = 3 * int(np.count_nonzero(~is_lit)) + 24 * present + int(tab_len[lit[is_lit]].sum())
    return _format_kernel(code, vals, lit, buf, tab_off, tab_len, cap).tobytes()


@dataclass(frozen=True)
class Travel:
    """What moving between paths costs: time [s], XY distance and Z lift distance [mm]."""

    time_s: float
    xy_mm: float
    lift_z_mm: float


def render_body(
    inputs: EmitInputs, table: LiteralTable
) -> tuple[bytes, npt.NDArray[np.int8], F64, Travel, float]:
    """Build the records of ``inputs`` and format them; also the records, the travel and dwell time."""
    code, vals, lit, travel_s, dwell_s, xy_mm, z_mm = build_program(*inputs.program_args())
    travel = Travel(float(travel_s), float(xy_mm), float(z_mm))
    return format_records(code, vals, lit, table), code, vals, travel, float(dwell_s)

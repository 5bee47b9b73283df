"""Telemetry plots of a batch record: one PNG per device, its numeric signals over the job."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["telemetry_plots"]

#: at most this many signals of one device are drawn (the table lists them all)
MAX_PANELS = 3


def _panels(signals: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    drawn = [(name, s) for name, s in signals.items() if s["samples"]]
    # physical quantities (with a unit) before flags and codes, then those that moved:
    # a flat line says little; the table lists every signal anyway
    drawn.sort(key=lambda item: (not item[1]["unit"], item[1]["max"] == item[1]["min"]))
    return drawn[:MAX_PANELS]


def telemetry_plots(record: dict[str, Any], *, dpi: int = 130) -> dict[str, bytes]:
    """PNG bytes per device with plottable telemetry (device name → image)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    tele = record["telemetry"]
    devices = tele["devices"]
    start: float = tele["start_t"]
    span = max(tele["end_t"] - start, 1e-9)
    # seconds for a short job, minutes for a long one
    scale, unit = (1.0, "seconds") if span < 180 else (60.0, "minutes")
    out: dict[str, bytes] = {}
    for device, dev in devices.items():
        panels = _panels(dev["signals"])
        if not panels:
            continue
        fig = Figure(figsize=(7.0, 1.25 * len(panels) + 0.5), dpi=dpi)
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (name, s) in zip(axes, panels, strict=True):
            # a stored value holds until the next one (deadband storage): draw it to the end
            ts = [(t - start) / scale for t, _ in s["samples"]] + [span / scale]
            vs = [v for _, v in s["samples"]] + [s["samples"][-1][1]]
            ax.plot(ts, vs, color="#1f4e79", linewidth=1.0, drawstyle="steps-post")
            label = f"{name} [{s['unit']}]" if s["unit"] else name
            ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
            ax.tick_params(labelsize=7)
            ax.grid(True, linewidth=0.3, alpha=0.6)
            ax.margins(y=0.25)
            ax.set_xlim(0, span / scale)
        axes[-1].set_xlabel(f"{unit} since the job started", fontsize=7)
        fig.suptitle(f"{device}: telemetry during the job", fontsize=8, x=0.01, ha="left")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        out[device] = buf.getvalue()
    return out

"""The dose-LET volume histogram plot (PNG) of one ROI from its stored histogram.

A DLVH is a surface V(dose, LETd) over the dose-LET plane; it is read as iso-volume lines: "x % of the ROI
gets at least this dose with at least this LETd". The plot draws the lines of a few volume levels (filled
between them) with the dose on the horizontal axis and LETd on the vertical one, as DVH plots put dose on the
horizontal axis. Rendered like the DVH plot, with matplotlib's object API on the rendering thread.
"""
from __future__ import annotations

import io
from typing import Any

from orthanc_rt.rendering.render_thread import render

VOLUME_LEVELS_PCT = (2.0, 10.0, 50.0, 90.0, 98.0)


def dlvh_png(histogram: dict[str, Any], *, title: str) -> bytes:
    """The PNG of one stored histogram (orthanc_rt.records.measurements.dose_let_histogram_dict)."""
    return render(_render, histogram, title)


def _render(histogram: dict[str, Any], title: str) -> bytes:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    dose, let = np.asarray(histogram["dose_gy"]), np.asarray(histogram["let_kev_um"])
    volume = np.asarray(histogram["volume_pct"]).T  # rows: LETd, columns: dose
    if dose.size > 1 and let.size > 1:
        filled = axes.contourf(dose, let, volume, levels=[0.0, *VOLUME_LEVELS_PCT, 100.0], cmap="viridis",
                               alpha=0.85)
        lines = axes.contour(dose, let, volume, levels=list(VOLUME_LEVELS_PCT), colors="white", linewidths=0.8)
        axes.clabel(lines, fmt=lambda v: f"{v:g} %", fontsize=8)
        figure.colorbar(filled, ax=axes, label="Volume of the ROI [%] with at least this dose and LETd")
    else:  # one bin on an axis: nothing to draw lines between
        axes.text(0.5, 0.5, "a single dose or LETd value: no iso-volume lines", ha="center",
                  transform=axes.transAxes)
    axes.set_xlabel("Dose [Gy]")
    axes.set_ylabel("LETd [keV/µm]")
    axes.set_title(f"{title}\n{histogram.get('roi_name', '')}: {histogram.get('voxels', 0)} voxels, LETd kept "
                   f"where dose ≥ {histogram.get('threshold_gy', 0):.3g} Gy", fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

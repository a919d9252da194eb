"""The DVH plot (PNG) from stored curves: one line per ROI, legend, dose in Gy and volume in %.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global
state), on the rendering thread (orthanc_rt.rendering.render_thread): on Orthanc's
HTTP threads matplotlib crashed the whole server. A plot of a few dozen
curves renders in well under a second.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

from orthanc_rt.rendering.render_thread import render


def dvh_png(curves: Sequence[dict[str, Any]], *, title: str) -> bytes:
    """The PNG, rendered on the rendering thread (see orthanc_rt.rendering.render_thread)."""
    return render(_render, curves, title)


def _render(curves: Sequence[dict[str, Any]], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    several_sets = len({c["structure_set_sop_instance_uid"] for c in curves}) > 1
    for c in curves:
        label = f"{c['roi_name']} ({c['volume_cc']:.1f} cc)"
        if several_sets:
            label += f" [RS …{c['structure_set_sop_instance_uid'][-6:]}]"
        axes.plot(c["dose_gy"], c["volume_pct"], label=label, color=c.get("color") or None, linewidth=1.5)
    axes.set_xlabel("Dose [Gy]")
    axes.set_ylabel("Volume [%]")
    axes.set_ylim(0, 102)
    axes.set_xlim(left=0)
    axes.grid(True, alpha=0.3)
    axes.set_title(title, fontsize=9)
    if curves:
        axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

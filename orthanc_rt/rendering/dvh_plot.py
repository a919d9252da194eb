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


def dvh_bands_png(bands: dict[str, dict[str, list[float]]], *, title: str) -> bytes:
    """Per ROI the band of all scenarios (shaded) with the nominal curve inside it, on the rendering thread."""
    return render(_render_bands, bands, title)


def _render_bands(bands: dict[str, dict[str, list[float]]], title: str) -> bytes:
    figure, axes = _figure()
    for k, (name, band) in enumerate(sorted(bands.items())):
        color = f"C{k % 10}"
        axes.fill_between(band["dose_gy"], band["min"], band["max"], color=color, alpha=0.25, linewidth=0)
        axes.plot(band["dose_gy"], band["nominal"], color=color, linewidth=1.5, label=name)
    return _finish(figure, axes, title, legend=bool(bands))


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _finish(figure: Any, axes: Any, title: str, *, legend: bool) -> bytes:
    axes.set_xlabel("Dose [Gy]")
    axes.set_ylabel("Volume [%]")
    axes.set_ylim(0, 102)
    axes.set_xlim(left=0)
    axes.grid(True, alpha=0.3)
    axes.set_title(title, fontsize=9)
    if legend:
        axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _render(curves: Sequence[dict[str, Any]], title: str) -> bytes:
    figure, axes = _figure()
    several_sets = len({c["structure_set_sop_instance_uid"] for c in curves}) > 1
    for c in curves:
        label = f"{c['roi_name']} ({c['volume_cc']:.1f} cc)"
        if several_sets:
            label += f" [RS …{c['structure_set_sop_instance_uid'][-6:]}]"
        axes.plot(c["dose_gy"], c["volume_pct"], label=label, color=c.get("color") or None, linewidth=1.5)
    return _finish(figure, axes, title, legend=bool(curves))

"""/rt/doses/{dose}/...: a dose's DVH and dose-LET volume histograms (JSON and plots) and its overlay on the CT."""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any

from orthanc_rt.dicom import sop
from orthanc_rt.errors import DicomInputError, InputNotReady, NotFound, OverlayError
from orthanc_rt.pacs.resources import instance_uid, known_sop_class
from orthanc_rt.records import measurements as records
from plugin import roles
from plugin.context import Context
from plugin.rest import HttpError, Request, Response, int_param
from plugin.router import Route

_SCENES_KEPT = 4
MAX_REFERENCE_GY = 1000.0  # isodose reference: ten times the highest prescription a plan request accepts


def routes(ctx: Context) -> list[Route]:
    scenes: OrderedDict[str, Any] = OrderedDict()  # dose instance id -> DoseScene, oldest first
    return [
        Route("GET", "/rt/doses/{dose}/dvh", partial(_dvh, ctx), roles.READ),
        Route("GET", "/rt/doses/{dose}/dvh.png", partial(_dvh_png, ctx), roles.READ),
        Route("GET", "/rt/doses/{dose}/dlvh", partial(_dlvh, ctx), roles.READ),
        Route("GET", "/rt/doses/{dose}/dlvh.png", partial(_dlvh_png, ctx), roles.READ),
        Route("GET", "/rt/doses/{dose}/overlay.png", partial(_overlay_png, ctx, scenes), roles.READ),
    ]


def _curves(ctx: Context, dose: str) -> tuple[str, list[dict[str, Any]]]:
    uid = instance_uid(ctx.orthanc, dose)
    curves = [records.curve_dict(c) for c in ctx.measurements.curves(uid)]
    if not curves:
        raise NotFound(f"no DVH for dose {dose}: not analysed (yet), or no structure set of its frame")
    return uid, curves


def _dvh(ctx: Context, request: Request, dose: str) -> Response:
    uid, curves = _curves(ctx, dose)
    return Response(200, {"dose_sop_instance_uid": uid, "curves": curves})


def _dvh_png(ctx: Context, request: Request, dose: str) -> Response:
    from orthanc_rt.rendering.dvh_plot import dvh_png  # matplotlib only when a plot is asked for

    uid, curves = _curves(ctx, dose)
    return Response(200, dvh_png(curves, title=f"Cumulative DVH, RTDOSE {uid}"), content_type="image/png")


def _histograms(ctx: Context, dose: str) -> tuple[str, list[dict[str, Any]]]:
    uid = instance_uid(ctx.orthanc, dose)
    found = [records.dose_let_histogram_dict(h) for h in ctx.measurements.dose_let_histograms(uid)]
    if not found:
        raise NotFound(f"no dose-LET volume histogram for dose {dose}: LETd was not scored with it (ask for the "
                       "dose with let: true), or no structure set of its frame")
    return uid, found


def _dlvh(ctx: Context, request: Request, dose: str) -> Response:
    uid, found = _histograms(ctx, dose)
    return Response(200, {"dose_sop_instance_uid": uid, "histograms": found})


def _dlvh_png(ctx: Context, request: Request, dose: str) -> Response:
    from orthanc_rt.rendering.dlvh_plot import dlvh_png  # matplotlib only when a plot is asked for

    uid, found = _histograms(ctx, dose)
    roi = request.query.get("roi")
    if not roi:
        raise HttpError(400, f"roi: the ROI to plot, one of {', '.join(h['roi_name'] for h in found)}", field="roi")
    chosen = next((h for h in found if h["roi_name"] == roi), None)
    if chosen is None:
        raise HttpError(404, f"no dose-LET volume histogram of ROI {roi!r} for dose {dose}; there are: "
                             f"{', '.join(h['roi_name'] for h in found)}")
    return Response(200, dlvh_png(chosen, title=f"Dose-LET volume histogram, RTDOSE {uid}"), content_type="image/png")


def _overlay_png(ctx: Context, scenes: OrderedDict[str, Any], request: Request, dose: str) -> Response:
    from orthanc_rt.rendering.overlay import DEFAULT_LEVELS_PCT, render_png
    from orthanc_rt.rendering.render_thread import render

    q = request.query
    try:
        levels = [float(v) for v in q["levels"].split(",")] if q.get("levels") else list(DEFAULT_LEVELS_PCT)
        reference = float(q["reference_gy"]) if q.get("reference_gy") else None
    except ValueError:
        raise HttpError(400, "levels and reference_gy: numbers, e.g. levels=50,95,107&reference_gy=2") from None
    if any(not 0 < v <= 200 for v in levels) or len(levels) > 10:
        raise HttpError(400, "levels: up to 10 percentages in (0, 200]", field="levels")
    if reference is not None and not 0 < reference <= MAX_REFERENCE_GY:  # also refuses nan and inf
        raise HttpError(400, f"reference_gy: a dose in (0, {MAX_REFERENCE_GY:g}] Gy", field="reference_gy")
    scene = _dose_scene(ctx, scenes, dose)
    index = int_param(q, "slice", -1, -1, 100_000)
    try:
        png = render(render_png, scene.ct, scene.dose, scene.outlines, plane=q.get("plane", "axial"),
                     index=None if index < 0 else index, window=q.get("window", "soft-tissue"),
                     levels_pct=levels, reference_gy=reference)
    except OverlayError as exc:
        raise HttpError(400, str(exc)) from None
    return Response(200, png, content_type="image/png")


def _dose_scene(ctx: Context, scenes: OrderedDict[str, Any], dose_instance_id: str) -> Any:
    """The dose, its CT and structures, kept for the last few doses viewed (slices are browsed)."""
    from orthanc_rt.rendering.dose_scene import load_dose_scene

    if known_sop_class(ctx.orthanc, dose_instance_id) != sop.RT_DOSE:
        raise HttpError(400, f"instance {dose_instance_id} is not an RT Dose")
    if dose_instance_id not in scenes:
        try:
            scene = load_dose_scene(ctx.orthanc, dose_instance_id)
        except InputNotReady as exc:
            raise HttpError(409, f"cannot draw the dose yet: {exc}") from None
        except DicomInputError as exc:
            raise HttpError(422, str(exc)) from None
        while len(scenes) >= _SCENES_KEPT:
            scenes.popitem(last=False)
        scenes[dose_instance_id] = scene
    return scenes[dose_instance_id]

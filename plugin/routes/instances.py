"""/rt/instances/{instance_id}/...: ask for the dose or the robustness evaluation of a plan, or the analysis of a
dose; read a robustness evaluation's DVH bands."""
from __future__ import annotations

from functools import partial

from orthanc_rt.dicom import sop
from orthanc_rt.errors import NotFound, ValidationError
from orthanc_rt.pacs.resources import ORTHANC_ID, frame_of_reference_of, instance_ref, known_sop_class
from orthanc_rt.records import jobs
from orthanc_rt.scheduling.params import PRIMARIES_RANGE, AnalysisParams, dose_params
from orthanc_rt.scheduling.robustness import robustness_params
from plugin import roles
from plugin.context import Context
from plugin.rest import HttpError, Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    return [
        Route("POST", "/rt/instances/{instance_id}/dose", partial(_request_dose, ctx), roles.COMPUTE),
        Route("POST", "/rt/instances/{instance_id}/analysis", partial(_request_analysis, ctx), roles.COMPUTE),
        Route("POST", "/rt/instances/{instance_id}/robustness", partial(_request_robustness, ctx), roles.COMPUTE),
        Route("GET", "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands", partial(_dvh_bands, ctx),
              roles.READ),
        Route("GET", "/rt/instances/{instance_id}/robustness/{job_id}/dvh-bands.png", partial(_dvh_bands_png, ctx),
              roles.READ),
    ]


def _request_dose(ctx: Context, request: Request, instance_id: str) -> Response:
    params = dose_params(request.json(), ctx.settings.auto_dose)
    sop_class = known_sop_class(ctx.orthanc, instance_id)
    if sop_class != sop.RT_ION_PLAN:
        name = sop.name_of(sop_class)
        if params.let or params.rbe_model:
            field = "let" if params.let else "rbe_model"
            raise HttpError(400, f"{field}: LETd and RBE-weighted doses are computed for proton plans (RT Ion Plan) "
                                 f"only; instance {instance_id} is a {name} ({sop_class})", field=field)
        raise HttpError(400, f"instance {instance_id} is a {name} ({sop_class}); the proton-dose workflow "
                             f"needs an RT Ion Plan ({sop.RT_ION_PLAN})")
    plan = instance_ref(ctx.orthanc, instance_id)
    job, created = ctx.scheduler.request_dose(plan, params, source="api", requested_by=request.user,
                                              rerun_failed=True)
    return Response(200, {"created": created, "job": jobs.to_dict(job)})


def _request_analysis(ctx: Context, request: Request, instance_id: str) -> Response:
    """Analyse the stored RTDOSE `instance_id` with the RTSTRUCT named in the body (Orthanc id)."""
    body = request.json()
    unknown = sorted(set(body) - {"structure_set"})
    if unknown:
        raise ValidationError(unknown[0], "unknown field; expected structure_set")
    structure_set_id = body.get("structure_set")
    if not isinstance(structure_set_id, str) or not ORTHANC_ID.fullmatch(structure_set_id):
        raise ValidationError("structure_set", "the Orthanc id of an RTSTRUCT is required "
                                               "(xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx)")
    frames = {}
    for role, orthanc_id, wanted, modality in (("instance", instance_id, sop.RT_DOSE, "RTDOSE"),
                                               ("structure_set", structure_set_id, sop.RT_STRUCTURE_SET,
                                                "RTSTRUCT")):
        sop_class = known_sop_class(ctx.orthanc, orthanc_id)
        if sop_class != wanted:
            raise HttpError(400, f"{role}: {orthanc_id} is a {sop.name_of(sop_class)}, not a "
                                 f"{sop.name_of(wanted)}", field=role)
        frames[role] = frame_of_reference_of(ctx.orthanc, orthanc_id, modality)
    if frames["instance"] != frames["structure_set"]:
        raise HttpError(400, f"the RTDOSE is on FrameOfReferenceUID {frames['instance']}, the RTSTRUCT on "
                             f"{frames['structure_set']}: dose and structures must share a frame of reference",
                        field="structure_set")
    job, created = ctx.scheduler.request_analysis(
        instance_ref(ctx.orthanc, instance_id), instance_ref(ctx.orthanc, structure_set_id),
        AnalysisParams.from_settings(ctx.settings.auto_analysis), frame_of_reference_uid=frames["instance"],
        source="api", requested_by=request.user)
    return Response(200, {"created": created, "job": jobs.to_dict(job)})


def _request_robustness(ctx: Context, request: Request, instance_id: str) -> Response:
    """Evaluate the stored RT Ion Plan `instance_id` in error scenarios (orthanc_rt.scheduling.robustness)."""
    params = robustness_params(request.json(), ctx.settings.robustness, primaries_range=PRIMARIES_RANGE,
                               default_primaries=ctx.settings.auto_dose.primaries)
    sop_class = known_sop_class(ctx.orthanc, instance_id)
    if sop_class != sop.RT_ION_PLAN:
        raise HttpError(400, f"instance {instance_id} is a {sop.name_of(sop_class)} ({sop_class}); robustness "
                             f"evaluations are for proton plans (RT Ion Plan, {sop.RT_ION_PLAN})")
    plan = instance_ref(ctx.orthanc, instance_id)
    # Knowable now when the study has its structure sets: a goal on an ROI none of them has is refused here
    # (a structure set still to come is waited for, and the job names the ROI if it lacks it).
    known = {roi.name for summary in ctx.index.of_study(plan.orthanc_study_id) for roi in summary.rois}
    missing = sorted({goal.roi for goal in params.goals} - known)
    if known and missing:
        raise HttpError(400, f"goals: no ROI {', '.join(repr(name) for name in missing)} in the study's structure "
                             f"sets (they have: {', '.join(sorted(known))})", field="goals")
    job, created = ctx.scheduler.request_robustness(plan, params, source="api", requested_by=request.user,
                                                    rerun_failed=True,
                                                    wait_for_ct_seconds=ctx.settings.auto_dose.wait_for_ct_seconds)
    return Response(200, {"created": created, "job": jobs.to_dict(job),
                          "scenarios": [scenario.name for scenario in params.scenario_list],
                          "goals_from": params.goals_from})


def _bands(ctx: Context, instance_id: str, job_id: str) -> tuple[str, dict]:
    job = ctx.store.get(job_id)
    if job is None or job.kind != "robustness" or job.inputs.get("plan", {}).get("orthanc_id") != instance_id:
        raise NotFound(f"no robustness evaluation {job_id} of instance {instance_id}")
    if job.state != jobs.SUCCEEDED:
        raise HttpError(409, f"robustness evaluation {job_id} is {job.state}; its DVH bands come when it succeeds"
                             + (f" ({job.message})" if job.message else ""))
    return job.id, dict(job.outputs.get("dvh_bands") or {})


def _dvh_bands(ctx: Context, request: Request, instance_id: str, job_id: str) -> Response:
    job, bands = _bands(ctx, instance_id, job_id)
    return Response(200, {"job": job, "plan": instance_id, "rois": bands,
                          "description": "cumulative DVH (% of the ROI receiving at least dose_gy): the nominal "
                                         "scenario and the band (min, max) of all scenarios"})


def _dvh_bands_png(ctx: Context, request: Request, instance_id: str, job_id: str) -> Response:
    from orthanc_rt.rendering.dvh_plot import dvh_bands_png  # matplotlib only when a plot is asked for

    job, bands = _bands(ctx, instance_id, job_id)
    return Response(200, dvh_bands_png(bands, title=f"DVH bands over the scenarios, robustness evaluation {job}"),
                    content_type="image/png")

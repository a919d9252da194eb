"""/rt/instances/{instance_id}/...: ask for the dose of a plan or the analysis of a dose."""
from __future__ import annotations

from functools import partial

from orthanc_rt.dicom import sop
from orthanc_rt.errors import ValidationError
from orthanc_rt.pacs.resources import ORTHANC_ID, frame_of_reference_of, instance_ref, known_sop_class
from orthanc_rt.records import jobs
from orthanc_rt.scheduling.params import AnalysisParams, dose_params
from plugin import roles
from plugin.context import Context
from plugin.rest import HttpError, Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    return [
        Route("POST", "/rt/instances/{instance_id}/dose", partial(_request_dose, ctx), roles.COMPUTE),
        Route("POST", "/rt/instances/{instance_id}/analysis", partial(_request_analysis, ctx), roles.COMPUTE),
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

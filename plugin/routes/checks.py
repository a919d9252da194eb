"""/rt/checks and /rt/doses/{dose}/compare: ask for a dose check, list the verdicts, read one and its report.

`POST /rt/doses/{dose}/compare` with `{"with": <RTDOSE>}` compares two stored
doses (the named one is the reference); without `with`, the dose's plan
(ReferencedRTPlanSequence, an RT Ion Plan in Orthanc) is recomputed with
MCsquare and the dose checked against the recompute, as the automatic check
does. The work is in worker/jobs/check.py; the records in
orthanc_rt/records/checks.py.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from orthanc_rt.dicom import sop
from orthanc_rt.errors import NotFound, ValidationError
from orthanc_rt.pacs.inputs import read_instance
from orthanc_rt.pacs.resources import (
    exists,
    find_instance,
    frame_of_reference_of,
    instance_ref,
    known_sop_class,
    referenced_plan_uid,
    study_uid,
)
from orthanc_rt.records import checks, jobs
from orthanc_rt.records.checks import CheckQuery
from orthanc_rt.records.tables import Job
from orthanc_rt.scheduling.params import auto_dose_params, check_params
from orthanc_rt.scheduling.scheduler import Scheduler
from plugin import roles
from plugin.context import Context
from plugin.rest import HttpError, Request, Response, choice_param, text_param, time_param
from plugin.router import MAX_PAGE, Route, page, page_params

_MAX_EXPORT = 10_000


def routes(ctx: Context) -> list[Route]:
    return [
        Route("POST", "/rt/doses/{dose}/compare", partial(_compare, ctx), roles.COMPUTE),
        Route("GET", "/rt/checks", partial(_list, ctx), roles.READ),
        Route("GET", "/rt/checks/{check_id}", partial(_get, ctx), roles.READ),
        Route("GET", "/rt/checks/{check_id}/report.pdf", partial(_report, ctx), roles.READ),
    ]


def _compare(ctx: Context, request: Request, dose: str) -> Response:
    config = ctx.check_config
    if config.problem:
        raise HttpError(503, f"dose checks are off: the configuration is refused ({config.problem})")
    body = request.json()
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object (check parameters, and 'with' for two doses)")
    other = body.pop("with", None)
    params = check_params(body, config.defaults)
    dose = _instance_id(ctx, dose, "dose")
    _require_dose(ctx, dose, "dose")
    scheduler: Scheduler = ctx.scheduler
    if other is not None:
        if not isinstance(other, str) or not other:
            raise ValidationError("with", "must be the Orthanc id of a stored RTDOSE")
        other = _instance_id(ctx, other, "with")
        if other == dose:
            raise ValidationError("with", "names the dose itself: a dose compared with itself checks nothing")
        _require_dose(ctx, other, "with")
        frames = {name: frame_of_reference_of(ctx.orthanc, ident, "RTDOSE") for name, ident in
                  (("dose", dose), ("with", other))}
        if frames["dose"] != frames["with"]:
            raise HttpError(422, f"the doses are on different frames of reference (dose: {frames['dose']}, with: "
                                 f"{frames['with']}): they cannot be compared voxel by voxel")
        job, created = scheduler.request_comparison(instance_ref(ctx.orthanc, dose), instance_ref(ctx.orthanc, other),
                                                    params, source="api", requested_by=request.user,
                                                    rerun_failed=True)
    else:
        plan_id = _plan_of(ctx, dose)
        recompute = auto_dose_params(ctx.settings.auto_dose, params.primaries)
        job, created = scheduler.request_check(instance_ref(ctx.orthanc, plan_id), params, recompute,
                                               source="api", requested_by=request.user,
                                               wait_seconds=config.wait_seconds, rerun_failed=True)
    return Response(201 if created else 200, {"check_id": job.id, "job": jobs.to_dict(job),
                                              "links": {"check": f"/rt/checks/{job.id}", "job": f"/rt/jobs/{job.id}"}})


def _instance_id(ctx: Context, value: str, field: str) -> str:
    """An Orthanc instance id as given, or that of a SOPInstanceUID (clients hold either)."""
    if "-" in value:
        return value
    found = find_instance(ctx.orthanc, value)
    if found is None:
        raise NotFound(f"{field}: no instance {value} in Orthanc")
    return found


def _require_dose(ctx: Context, instance_id: str, field: str) -> None:
    sop_class = known_sop_class(ctx.orthanc, instance_id)
    if sop_class != sop.RT_DOSE:
        raise HttpError(400, f"{field}: instance {instance_id} is {sop.describe(sop_class)}, not an RT Dose",
                        field=field)


def _plan_of(ctx: Context, dose: str) -> str:
    """The Orthanc id of the RT Ion Plan the dose references; 422 naming the problem otherwise."""
    plan_uid = referenced_plan_uid(ctx.orthanc, dose)
    if not plan_uid:
        raise HttpError(422, f"RTDOSE {dose} references no plan (ReferencedRTPlanSequence, 300C,0002): nothing to "
                             "recompute; compare it with another dose with {\"with\": <RTDOSE>}")
    plan_id = find_instance(ctx.orthanc, plan_uid)
    if plan_id is None:
        raise HttpError(422, f"RTDOSE {dose} references the plan {plan_uid}, which is not in Orthanc: store the plan "
                             "first")
    sop_class = known_sop_class(ctx.orthanc, plan_id)
    if sop_class != sop.RT_ION_PLAN:
        raise HttpError(422, f"RTDOSE {dose} is the dose of {sop.describe(sop_class)}: only ion plans are "
                             "recomputed (MCsquare); compare it with another dose with {\"with\": <RTDOSE>}")
    return plan_id


def _list(ctx: Context, request: Request) -> Response:
    q = request.query
    export = q.get("format") or ""
    if export not in ("", "json", "csv"):
        raise HttpError(400, f"format: must be csv or json, got {export[:20]!r}", field="format")
    verdict = choice_param(q, "verdict", checks.VERDICTS, "verdict")
    limit, offset = page_params(q, 50, _MAX_EXPORT if export == "csv" else MAX_PAGE)
    study = text_param(q, "study")
    rows, total = ctx.checks.list(CheckQuery(
        study=study_uid(ctx.orthanc, study) if study else None, plan=text_param(q, "plan"), verdict=verdict,
        since=time_param(q, "since"), until=time_param(q, "until"), limit=limit, offset=offset))
    headers = {"X-Total-Count": str(total)}
    if export == "csv":
        return Response(200, checks.to_csv(rows), content_type="text/csv; charset=utf-8", headers=headers)
    return Response(200, page([checks.to_dict(c, full=False) for c in rows], total, limit, offset), headers=headers)


def _get(ctx: Context, request: Request, check_id: str) -> Response:
    record = ctx.checks.get(check_id)
    job = ctx.store.get(check_id)
    if record is None and (job is None or job.kind != "check"):
        raise NotFound(f"no check {check_id}")
    body: dict[str, Any] = checks.to_dict(record) if record is not None else {"id": check_id, "verdict": None}
    body["job"] = _job_summary(job)
    return Response(200, body)


def _report(ctx: Context, request: Request, check_id: str) -> Response:
    from orthanc_rt.dicom.encapsulated_pdf import read_encapsulated_pdf

    record = ctx.checks.get(check_id)
    if record is None or not record.report_orthanc_id:
        raise NotFound(f"check {check_id} has no report (no verdict yet, or no such check)")
    if not exists(ctx.orthanc, f"/instances/{record.report_orthanc_id}"):
        raise NotFound(f"the report of check {check_id} ({record.report_orthanc_id}) was deleted from Orthanc")
    pdf = read_encapsulated_pdf(read_instance(ctx.orthanc, record.report_orthanc_id))
    return Response(200, pdf, content_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="dose-check-{check_id}.pdf"'})


def _job_summary(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"id": job.id, "state": job.state, "stage": job.stage, "progress": round(job.progress or 0.0, 4),
            "message": job.message, "recompute_job": job.inputs.get("recompute_job")}

"""/rt/jobs: list, read and cancel jobs."""
from __future__ import annotations

from functools import partial

from orthanc_rt.errors import NotFound
from orthanc_rt.pacs.resources import exists
from orthanc_rt.records import jobs
from orthanc_rt.records.jobs import JobQuery
from orthanc_rt.records.tables import Job
from orthanc_rt.scheduling import kinds
from plugin import roles
from plugin.context import Context
from plugin.rest import Request, Response, choice_param, text_param
from plugin.router import Route, page, page_params

# Outputs naming instances a job stored in Orthanc (the others name its inputs).
RESULT_OUTPUTS = ("rtdose", "rtplan")


def routes(ctx: Context) -> list[Route]:
    return [
        Route("GET", "/rt/jobs", partial(_list, ctx), roles.READ),
        Route("GET", "/rt/jobs/{job_id}", partial(_get, ctx), roles.READ),
        Route("DELETE", "/rt/jobs/{job_id}", partial(_cancel, ctx), roles.COMPUTE),
    ]


def _list(ctx: Context, request: Request) -> Response:
    q = request.query
    state = choice_param(q, "state", jobs.STATES, "job state")
    kind = choice_param(q, "kind", kinds.NAMES, "job kind")
    limit, offset = page_params(q, 50)
    rows, total = ctx.store.list(JobQuery(state=state, kind=kind, study=text_param(q, "study"),
                                          limit=limit, offset=offset))
    return Response(200, page([jobs.to_dict(j) for j in rows], total, limit, offset))


def _get(ctx: Context, request: Request, job_id: str) -> Response:
    job = ctx.store.get(job_id, with_events=True)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return Response(200, {**jobs.to_dict(job, events=True), "results_deleted": _deleted_results(ctx, job)})


def _deleted_results(ctx: Context, job: Job) -> list[str]:
    """The outputs whose instance is no longer in Orthanc: someone deleted a job's result (the archive's
    audit trail says who). Asked of Orthanc on each read of one job, so it holds however it was deleted."""
    outputs = job.outputs or {}
    return [name for name in RESULT_OUTPUTS
            if isinstance(outputs.get(name), dict) and outputs[name].get("orthanc_id")
            and not exists(ctx.orthanc, f"/instances/{outputs[name]['orthanc_id']}")]


def _cancel(ctx: Context, request: Request, job_id: str) -> Response:
    try:
        result = ctx.scheduler.cancel(job_id, actor=request.user)
    except KeyError:
        raise NotFound(f"no job {job_id}") from None
    job = ctx.store.get(job_id)
    return Response(200 if result["cancelled"] else 409, {**result, "job": jobs.to_dict(job)})

"""/rt/plans: request plans (one study or a batch), list, read and delete them.

The work is in orthanc_rt.scheduling.submission (validation, records, jobs).
"""
from __future__ import annotations

from functools import partial
from typing import Any

from orthanc_rt.errors import NotFound, OrthancError, PlanRequestError
from orthanc_rt.planning import workflows
from orthanc_rt.records import jobs, plans
from orthanc_rt.records.plans import PlanQuery
from orthanc_rt.records.tables import Job, Plan
from orthanc_rt.scheduling.submission import INPUT_FIELDS, MAX_BATCH, is_resource_key, parse
from plugin import roles
from plugin.context import Context
from plugin.rest import HttpError, Request, Response, choice_param, text_param
from plugin.router import Route, page, page_params


def routes(ctx: Context) -> list[Route]:
    return [
        # Before /rt/plans/{plan_id}, whose pattern "batch" matches too.
        Route("POST", "/rt/plans/batch", partial(_request_batch, ctx), roles.COMPUTE),
        Route("GET", "/rt/plans", partial(_list, ctx), roles.READ),
        Route("POST", "/rt/plans", partial(_request, ctx), roles.COMPUTE),
        Route("GET", "/rt/plans/{plan_id}", partial(_get, ctx), roles.READ),
        Route("DELETE", "/rt/plans/{plan_id}", partial(_delete, ctx), roles.PLAN_APPROVE),
    ]


def _request(ctx: Context, request: Request) -> Response:
    done = ctx.submitter.submit(request.json(), source="api", requested_by=request.user)
    return Response(201 if done.created else 200, plans.to_dict(done.plan, done.job))


def _request_batch(ctx: Context, request: Request) -> Response:
    body = request.json()
    unknown = sorted(set(body) - {"studies", "request"})
    if unknown:
        raise HttpError(400, f"unknown field(s) {', '.join(unknown)}; a batch is {{studies: [...], request: {{...}}}}")
    studies, template = body.get("studies"), body.get("request")
    if not isinstance(studies, list) or not 1 <= len(studies) <= MAX_BATCH \
            or not all(is_resource_key(s) for s in studies):
        raise HttpError(400, f"studies: a list of 1 to {MAX_BATCH} Orthanc study ids or StudyInstanceUIDs")
    if len(set(studies)) != len(studies):
        raise HttpError(400, "studies: each study once")
    if not isinstance(template, dict):
        raise HttpError(400, "request: the plan request (as for POST /rt/plans, without study) is required")
    per_study = sorted(set(template) & set(INPUT_FIELDS))
    if per_study:
        raise HttpError(400, f"request: {', '.join(per_study)} cannot be shared by a batch; each study's newest "
                             "structure set with the target and its CT are used")
    try:
        parse(template)  # one bad parameter refuses the whole batch before anything is queued
    except PlanRequestError as exc:
        raise HttpError(400, f"request: {exc}") from None
    results: list[dict[str, Any]] = []
    for study in studies:
        try:
            done = ctx.submitter.submit({**template, "study": study}, source="batch", requested_by=request.user)
        except PlanRequestError as exc:
            results.append({"study": study, "error": str(exc)})
            continue
        results.append({"study": study, "created": done.created, "plan": plans.to_dict(done.plan, done.job)})
    counts = {"created": sum(1 for r in results if r.get("created")),
              "existing": sum(1 for r in results if "plan" in r and not r["created"]),
              "failed": sum(1 for r in results if "error" in r)}
    return Response(200, {**counts, "results": results})


def _list(ctx: Context, request: Request) -> Response:
    q = request.query
    status = choice_param(q, "status", plans.STATUSES, "plan status")
    workflow = choice_param(q, "workflow", list(workflows.WORKFLOWS), "workflow", listing="known:")
    limit, offset = page_params(q, 50)
    rows, total = ctx.plans.list(PlanQuery(study=text_param(q, "study"), status=status, workflow=workflow,
                                           limit=limit, offset=offset))
    return Response(200, page([plans.to_dict(p, j) for p, j in rows], total, limit, offset))


def _get(ctx: Context, request: Request, plan_id: str) -> Response:
    return Response(200, plans.to_dict(*_plan(ctx, plan_id)))


def _delete(ctx: Context, request: Request, plan_id: str) -> Response:
    """Cancel the plan's job and mark the plan deleted; `?delete_results=true` also removes its RTPLAN/RTDOSE."""
    plan, job = _plan(ctx, plan_id)
    if plan.deleted_at is not None:
        return Response(409, {"error": f"plan {plan_id} was already deleted", "status": 409,
                              "plan": plans.to_dict(plan, job)})
    delete_results = (request.query.get("delete_results") or "false").lower()
    if delete_results not in ("true", "false"):
        raise HttpError(400, "delete_results: true or false")
    cancelled = None
    if job is not None and job.state in jobs.ACTIVE_STATES:
        cancelled = ctx.scheduler.cancel(job.id, actor=request.user)
    removed = []
    if delete_results == "true" and job is not None:
        for name in ("rtplan", "rtdose"):
            orthanc_id = (job.outputs.get(name) or {}).get("orthanc_id")
            if orthanc_id and _delete_instance(ctx, orthanc_id):
                removed.append(orthanc_id)
    ctx.plans.mark_deleted(plan_id, actor=request.user,
                           detail={"job_cancelled": bool(cancelled and cancelled.get("cancelled")),
                                   "removed_instances": removed})
    plan, job = _plan(ctx, plan_id)
    return Response(200, {"deleted": True, "job_cancelled": cancelled, "removed_instances": removed,
                          "plan": plans.to_dict(plan, job)})


def _plan(ctx: Context, plan_id: str) -> tuple[Plan, Job | None]:
    found = ctx.plans.with_job(plan_id)
    if found is None:
        raise NotFound(f"no plan {plan_id}")
    return found


def _delete_instance(ctx: Context, orthanc_id: str) -> bool:
    try:
        ctx.orthanc.delete(f"/instances/{orthanc_id}")
        return True
    except OrthancError as exc:
        if exc.status == 404:
            return False
        raise

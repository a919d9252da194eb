"""The planning routes: workflows, plan requests (single and batch), plan records, a study's structure sets.

Plain functions of a Request like the rest of plugin/api.py, which mounts
them; the work is in orthanc_rt.planning.submission (validation, records, jobs).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orthanc_rt.pacs.client import OrthancError
from orthanc_rt.pacs.structure_sets import StructureSetIndex
from orthanc_rt.planning import workflows
from orthanc_rt.planning.request import PlanRequestError
from orthanc_rt.planning.submission import (
    INPUT_FIELDS,
    MAX_BATCH,
    PlanSubmitter,
    is_resource_key,
    parse,
)
from orthanc_rt.records import jobs, plans
from orthanc_rt.records.plans import PlanQuery, PlanStore
from plugin import roles
from plugin.rest import HttpError, Request, Response, int_param, text_param

if TYPE_CHECKING:
    from plugin.api import Route, RtApi


class PlanRoutes:
    def __init__(self, api: "RtApi"):
        self.api = api
        self.plans = PlanStore(api.store.url)
        self.index = StructureSetIndex(api.orthanc)
        self.submitter = PlanSubmitter(self.index, self.plans, api.scheduler)

    def routes(self) -> list["Route"]:
        from plugin.api import Route

        return [
            Route("GET", "/rt/workflows", self.list_workflows, roles.READ),
            Route("GET", "/rt/workflows/{workflow}", self.get_workflow, roles.READ),
            Route("POST", "/rt/plans/batch", self.request_batch, roles.COMPUTE),
            Route("GET", "/rt/plans", self.list_plans, roles.READ),
            Route("POST", "/rt/plans", self.request_plan, roles.COMPUTE),
            Route("GET", "/rt/plans/{plan_id}", self.get_plan, roles.READ),
            Route("DELETE", "/rt/plans/{plan_id}", self.delete_plan, roles.PLAN_APPROVE),
            Route("GET", "/rt/studies/{study}/structure-sets", self.structure_sets, roles.READ),
        ]

    def list_workflows(self, request: Request) -> Response:
        return Response(200, {"workflows": [w.as_dict() for w in workflows.WORKFLOWS.values()]})

    def get_workflow(self, request: Request, workflow: str) -> Response:
        if workflow not in workflows.WORKFLOWS:
            raise HttpError(404, f"no workflow {workflow}; known: {', '.join(workflows.WORKFLOWS)}")
        return Response(200, workflows.WORKFLOWS[workflow].as_dict())

    def request_plan(self, request: Request) -> Response:
        try:
            done = self.submitter.submit(request.json(), source="api", requested_by=request.user)
        except PlanRequestError as exc:
            raise HttpError(400, str(exc)) from None
        return Response(201 if done.created else 200, plans.to_dict(done.plan, done.job))

    def request_batch(self, request: Request) -> Response:
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
                done = self.submitter.submit({**template, "study": study}, source="batch", requested_by=request.user)
            except PlanRequestError as exc:
                results.append({"study": study, "error": str(exc)})
                continue
            results.append({"study": study, "created": done.created, "plan": plans.to_dict(done.plan, done.job)})
        counts = {"created": sum(1 for r in results if r.get("created")),
                  "existing": sum(1 for r in results if "plan" in r and not r["created"]),
                  "failed": sum(1 for r in results if "error" in r)}
        return Response(200, {**counts, "results": results})

    def list_plans(self, request: Request) -> Response:
        q = request.query
        status, workflow = q.get("status") or None, q.get("workflow") or None
        if status and status not in plans.STATUSES:
            raise HttpError(400, f"status: unknown plan status {status!r}; expected one of {list(plans.STATUSES)}")
        if workflow and workflow not in workflows.WORKFLOWS:
            raise HttpError(400, f"workflow: unknown workflow {workflow!r}; known: {list(workflows.WORKFLOWS)}")
        limit = int_param(q, "limit", 50, 1, 500)
        offset = int_param(q, "offset", 0, 0, 10**9)
        rows, total = self.plans.list(PlanQuery(study=text_param(q, "study"), status=status, workflow=workflow,
                                                limit=limit, offset=offset))
        return Response(200, {"items": [plans.to_dict(p, j) for p, j in rows], "total": total, "limit": limit,
                              "offset": offset})

    def get_plan(self, request: Request, plan_id: str) -> Response:
        found = self.plans.with_job(plan_id)
        if found is None:
            raise HttpError(404, f"no plan {plan_id}")
        return Response(200, plans.to_dict(*found))

    def delete_plan(self, request: Request, plan_id: str) -> Response:
        """Cancel the plan's job and mark the plan deleted; `?delete_results=true` also removes its RTPLAN/RTDOSE."""
        found = self.plans.with_job(plan_id)
        if found is None:
            raise HttpError(404, f"no plan {plan_id}")
        plan, job = found
        if plan.deleted_at is not None:
            return Response(409, {"error": f"plan {plan_id} was already deleted", "status": 409,
                                  "plan": plans.to_dict(plan, job)})
        delete_results = (request.query.get("delete_results") or "false").lower()
        if delete_results not in ("true", "false"):
            raise HttpError(400, "delete_results: true or false")
        cancelled = None
        if job is not None and job.state in jobs.ACTIVE_STATES:
            cancelled = self.api.scheduler.cancel(job.id, actor=request.user)
        removed = []
        if delete_results == "true" and job is not None:
            for name in ("rtplan", "rtdose"):
                orthanc_id = (job.outputs.get(name) or {}).get("orthanc_id")
                if orthanc_id and self._delete_instance(orthanc_id):
                    removed.append(orthanc_id)
        self.plans.mark_deleted(plan_id, actor=request.user,
                                detail={"job_cancelled": bool(cancelled and cancelled.get("cancelled")),
                                        "removed_instances": removed})
        plan, job = self.plans.with_job(plan_id)
        return Response(200, {"deleted": True, "job_cancelled": cancelled, "removed_instances": removed,
                              "plan": plans.to_dict(plan, job)})

    def structure_sets(self, request: Request, study: str) -> Response:
        study_id = self.index.study_id(study)
        if study_id is None:
            raise HttpError(404, f"no study {study} in Orthanc")
        return Response(200, {"orthanc_study_id": study_id,
                              "structure_sets": [s.as_dict() for s in self.index.of_study(study_id)],
                              "ct_series": [vars(c) for c in self.index.ct_series(study_id)]})

    def _delete_instance(self, orthanc_id: str) -> bool:
        try:
            self.api.orthanc.delete(f"/instances/{orthanc_id}")
            return True
        except OrthancError as exc:
            if exc.status == 404:
                return False
            raise

"""The REST routes under /rt/, as plain functions of a Request.

The glue registers one Orthanc callback for /rt/ and calls `RtApi.handle`;
everything here runs and is tested without Orthanc.
"""
from __future__ import annotations

import logging
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

import orthanc_rt
from orthanc_rt import audit, jobs
from orthanc_rt.reconcile import reconcile as queue_plans_without_dose
from orthanc_rt.dicom import sop
from orthanc_rt.jobs import JobQuery, JobStore
from orthanc_rt.orthanc_api import OrthancApi, OrthancError, get_json
from orthanc_rt.params import ValidationError, dose_params
from orthanc_rt.queue import Dispatcher
from orthanc_rt.resources import plan_ref, sop_class_of
from orthanc_rt.scheduling import Scheduler
from orthanc_rt.settings import Settings
from plugin import openapi, roles
from plugin.rest import HttpError, Request, Response, error_response
from plugin.roles import Access

log = logging.getLogger("orthanc_rt.plugin")

_MAX_PAGE = 500


# What a path parameter may look like (also stated in openapi.py).
PARAM_PATTERNS = {"job_id": r"[A-Za-z0-9_.-]{1,64}", "instance_id": r"[0-9a-f-]{1,64}"}


@dataclass
class Route:
    method: str
    template: str  # "/rt/jobs/{job_id}", as in the OpenAPI description
    handler: Callable[..., Response]
    permission: str  # see plugin/roles.py

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{PARAM_PATTERNS[m[1]]})", self.template))


class RtApi:
    def __init__(self, orthanc: OrthancApi, settings: Settings, store: JobStore, dispatcher: Dispatcher,
                 access: Access | None = None):
        self.orthanc = orthanc
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.access = access or Access(None, orthanc_authentication=False)
        self.scheduler = Scheduler(store, dispatcher)
        self.routes = [
            Route("GET", "/rt/health", self.health, roles.READ),
            Route("GET", "/rt/openapi.json", self.openapi, roles.READ),
            Route("GET", "/rt/jobs", self.list_jobs, roles.READ),
            Route("GET", "/rt/jobs/{job_id}", self.get_job, roles.READ),
            Route("DELETE", "/rt/jobs/{job_id}", self.cancel_job, roles.COMPUTE),
            Route("POST", "/rt/instances/{instance_id}/dose", self.request_dose, roles.COMPUTE),
            Route("POST", "/rt/reconcile", self.reconcile, roles.RECONCILE),
            Route("GET", "/rt/audit", self.list_audit, roles.AUDIT),
            Route("GET", "/rt/audit/verify", self.verify_audit, roles.AUDIT),
        ]
        self._compiled = [(route, route.pattern) for route in self.routes]

    # -- dispatch ---------------------------------------------------------
    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        allowed = []
        for route, pattern in self._compiled:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            decision = self.access.check(request.headers, route.permission)
            if not decision.allowed:
                return error_response(decision.status, decision.reason)
            request.user = decision.identity.user
            try:
                return route.handler(request, **match.groupdict())
            except HttpError as exc:
                return error_response(exc.status, exc.message, **exc.details)
            except ValidationError as exc:
                return error_response(400, str(exc), field=exc.field)
            except RedisError as exc:
                return error_response(503, f"Redis is unavailable: {type(exc).__name__}")
            except SQLAlchemyError as exc:
                log.exception("database error on %s %s", request.method, path)
                return error_response(503, f"database is unavailable: {type(exc).__name__}")
            except Exception:  # the plugin must answer, never take Orthanc down
                log.exception("internal error on %s %s", request.method, path)
                return error_response(500, "internal error in Orthanc-RT; see Orthanc's log")
        if allowed:
            return error_response(405, f"{request.method} not allowed on {path}; use {', '.join(sorted(allowed))}",
                                  allowed=sorted(allowed))
        return error_response(404, f"no Orthanc-RT route {path}")

    # -- routes -----------------------------------------------------------
    def health(self, request: Request) -> Response:
        checks: dict[str, dict] = {}
        try:
            system = get_json(self.orthanc, "/system")
            checks["orthanc"] = {"ok": True, "version": system.get("Version"), "name": system.get("Name")}
        except Exception as exc:  # health must report, not fail
            checks["orthanc"] = {"ok": False, "error": str(exc)}
        try:
            stats = self.dispatcher.stats()
            checks["redis"] = {"ok": True, "version": stats["redis_version"], "queues": stats["queues"]}
            checks["workers"] = {"ok": bool(stats["workers"]), "count": len(stats["workers"]),
                                 "workers": stats["workers"]}
        except RedisError as exc:
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            checks["workers"] = {"ok": False, "error": "unknown while Redis is unavailable"}
        try:
            counts = self.store.counts_by_state()
            pending = len(self.store.not_enqueued())
            checks["database"] = {"ok": True, "jobs_by_state": counts, "pending_enqueue": pending}
        except SQLAlchemyError as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        ok = all(c["ok"] for c in checks.values())
        body = {
            "status": "ok" if ok else "degraded",
            "version": orthanc_rt.__version__,
            "python": platform.python_version(),
            "checks": checks,
            "settings": self.settings.redacted(),
        }
        return Response(200 if ok else 503, body)

    def list_jobs(self, request: Request) -> Response:
        q = request.query
        state, kind = q.get("state") or None, q.get("kind") or None
        if state and state not in jobs.STATES:
            raise HttpError(400, f"state: unknown job state {state!r}; expected one of {list(jobs.STATES)}")
        if kind and kind not in jobs.KINDS:
            raise HttpError(400, f"kind: unknown job kind {kind!r}; expected one of {list(jobs.KINDS)}")
        limit = _int_param(q, "limit", 50, 1, _MAX_PAGE)
        offset = _int_param(q, "offset", 0, 0, 10**9)
        rows, total = self.store.list(JobQuery(state=state, kind=kind, study=_text_param(q, "study"),
                                               limit=limit, offset=offset))
        return Response(200, {"items": [jobs.to_dict(j) for j in rows], "total": total,
                              "limit": limit, "offset": offset})

    def get_job(self, request: Request, job_id: str) -> Response:
        job = self.store.get(job_id, with_events=True)
        if job is None:
            raise HttpError(404, f"no job {job_id}")
        return Response(200, jobs.to_dict(job, events=True))

    def cancel_job(self, request: Request, job_id: str) -> Response:
        try:
            result = self.scheduler.cancel(job_id, actor=request.user)
        except KeyError:
            raise HttpError(404, f"no job {job_id}") from None
        job = self.store.get(job_id)
        return Response(200 if result["cancelled"] else 409, {**result, "job": jobs.to_dict(job)})

    def request_dose(self, request: Request, instance_id: str) -> Response:
        params = dose_params(request.json(), self.settings.auto_dose)
        try:
            sop_class = sop_class_of(self.orthanc, instance_id)
        except OrthancError as exc:
            if exc.status == 404:
                raise HttpError(404, f"no instance {instance_id} in Orthanc") from None
            raise
        if sop_class != sop.RT_ION_PLAN:
            name = sop.name_of(sop_class)
            raise HttpError(400, f"instance {instance_id} is a {name} ({sop_class}); the proton-dose workflow "
                                 f"needs an RT Ion Plan ({sop.RT_ION_PLAN})")
        plan = plan_ref(self.orthanc, instance_id)
        job, created = self.scheduler.request_dose(plan, params, source="api", requested_by=request.user)
        return Response(200, {"created": created, "job": jobs.to_dict(job)})


    def openapi(self, request: Request) -> Response:
        return Response(200, openapi.spec(orthanc_rt.__version__))

    def reconcile(self, request: Request) -> Response:
        result = queue_plans_without_dose(self.orthanc, self.scheduler, self.settings.auto_dose, actor=request.user)
        return Response(200, result)

    def list_audit(self, request: Request) -> Response:
        q = request.query
        limit = _int_param(q, "limit", 100, 1, _MAX_PAGE)
        offset = _int_param(q, "offset", 0, 0, 10**9)
        rows, total = audit.query(self.store.url, audit.AuditQuery(
            actor=_text_param(q, "actor"), action=_text_param(q, "action"), subject=_text_param(q, "subject"),
            since=_time_param(q, "since"), until=_time_param(q, "until"), limit=limit, offset=offset))
        return Response(200, {"items": rows, "total": total, "limit": limit, "offset": offset})

    def verify_audit(self, request: Request) -> Response:
        return Response(200, audit.verify(self.store.url))


def _text_param(query: dict[str, str], name: str) -> str | None:
    raw = query.get(name) or None
    if raw is not None and len(raw) > 128:
        raise HttpError(400, f"{name}: at most 128 characters")
    if raw is not None and any(ord(c) < 32 for c in raw):  # PostgreSQL refuses NUL in text
        raise HttpError(400, f"{name}: control characters are not allowed")
    return raw


def _time_param(query: dict[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise HttpError(400, f"{name}: expected an ISO 8601 date-time, got {raw[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, f"{name}: must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name}: must be between {low} and {high}, got {value}")
    return value

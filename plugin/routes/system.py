"""/rt/health, /rt/openapi.json and /rt/reconcile: the service itself."""
from __future__ import annotations

import platform
from functools import partial
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

import orthanc_rt
from orthanc_rt.pacs.client import get_json
from orthanc_rt.planning.auto_rules import shown_settings
from orthanc_rt.scheduling.reconcile import reconcile as queue_plans_without_dose
from plugin import openapi, roles
from plugin.context import Context
from plugin.rest import Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    return [
        Route("GET", "/rt/health", partial(_health, ctx), roles.READ),
        Route("GET", "/rt/openapi.json", _openapi, roles.READ),
        Route("POST", "/rt/reconcile", partial(_reconcile, ctx), roles.RECONCILE),
    ]


def _health(ctx: Context, request: Request) -> Response:
    checks: dict[str, dict] = {}
    try:
        system = get_json(ctx.orthanc, "/system")
        checks["orthanc"] = {"ok": True, "version": system.get("Version"), "name": system.get("Name")}
    except Exception as exc:  # health must report, not fail
        checks["orthanc"] = {"ok": False, "error": str(exc)}
    try:
        stats = ctx.dispatcher.stats()
        checks["redis"] = {"ok": True, "version": stats["redis_version"], "queues": stats["queues"]}
        checks["workers"] = {"ok": bool(stats["workers"]), "count": len(stats["workers"]),
                             "workers": stats["workers"]}
    except RedisError as exc:
        checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        checks["workers"] = {"ok": False, "error": "unknown while Redis is unavailable"}
    try:
        counts = ctx.store.counts_by_state()
        pending = len(ctx.store.not_enqueued())
        checks["database"] = {"ok": True, "jobs_by_state": counts, "pending_enqueue": pending}
    except SQLAlchemyError as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    ok = all(c["ok"] for c in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "version": orthanc_rt.__version__,
        "python": platform.python_version(),
        "checks": checks,
        "settings": {**shown_settings(ctx.settings), "dose_check": _dose_check(ctx),
                     "auto_compute_from": ctx.compute_from.shown()},
    }
    return Response(200 if ok else 503, body)


def _dose_check(ctx: Context) -> dict[str, Any]:
    """OrthancRT.DoseCheck as in use: the values, or why the configuration was refused (checks are then off)."""
    config = ctx.check_config
    return {"enabled": config.enabled, "problem": config.problem or None, "wait_seconds": config.wait_seconds,
            **config.defaults.as_dict()}


def _openapi(request: Request) -> Response:
    return Response(200, openapi.spec(orthanc_rt.__version__))


def _reconcile(ctx: Context, request: Request) -> Response:
    return Response(200, queue_plans_without_dose(ctx.orthanc, ctx.scheduler, ctx.settings.auto_dose,
                                                  actor=request.user))

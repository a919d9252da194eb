"""/rt/audit: read the audit trail and verify its hash chain."""
from __future__ import annotations

from functools import partial

from orthanc_rt.records import audit
from plugin import roles
from plugin.context import Context
from plugin.rest import Request, Response, text_param, time_param
from plugin.router import Route, page, page_params


def routes(ctx: Context) -> list[Route]:
    return [
        Route("GET", "/rt/audit", partial(_list, ctx), roles.AUDIT),
        Route("GET", "/rt/audit/verify", partial(_verify, ctx), roles.AUDIT),
    ]


def _list(ctx: Context, request: Request) -> Response:
    q = request.query
    limit, offset = page_params(q, 100)
    rows, total = audit.query(ctx.store.url, audit.AuditQuery(
        actor=text_param(q, "actor"), action=text_param(q, "action"), subject=text_param(q, "subject"),
        since=time_param(q, "since"), until=time_param(q, "until"), limit=limit, offset=offset))
    return Response(200, page(rows, total, limit, offset))


def _verify(ctx: Context, request: Request) -> Response:
    return Response(200, audit.verify(ctx.store.url))


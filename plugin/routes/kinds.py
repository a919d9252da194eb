"""/rt/kinds: the kinds of job Orthanc-RT runs, their queues in the order workers take them, and time limits.

What an administrator checks after changing a time limit or before adding
workers for one queue: the limits shown are the ones jobs are enqueued with.
"""
from __future__ import annotations

from functools import partial

from orthanc_rt.scheduling import kinds
from plugin import roles
from plugin.context import Context
from plugin.rest import Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    return [Route("GET", "/rt/kinds", partial(_list, ctx), roles.READ)]


def _list(ctx: Context, request: Request) -> Response:
    limits = ctx.dispatcher.timeouts
    queues = []
    for name in kinds.QUEUE_PRIORITY:
        served = [entry.name for entry in (*kinds.KINDS, *kinds.SUB_JOBS) if entry.queue == name]
        queues.append({"name": name, "serves": served, "waiting": len(ctx.dispatcher.queue(served[0]))})
    return Response(200, {
        "kinds": [{"name": kind.name, "queue": kind.queue, "time_limit_s": limits[kind.name],
                   "time_limit_setting": kind.time_limit if isinstance(kind.time_limit, str) else None,
                   "preloaded_by_workers": kind.preload} for kind in kinds.KINDS],
        "queues": queues,
    })

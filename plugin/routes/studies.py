"""/rt/studies/{study}/...: a study's measurement summary and its structure sets and CT series."""
from __future__ import annotations

from functools import partial

from orthanc_rt.errors import NotFound
from orthanc_rt.pacs.resources import study_uid
from plugin import roles
from plugin.context import Context
from plugin.rest import Request, Response
from plugin.router import Route


def routes(ctx: Context) -> list[Route]:
    return [
        Route("GET", "/rt/studies/{study}/measurements/summary", partial(_measurement_summary, ctx), roles.READ),
        Route("GET", "/rt/studies/{study}/structure-sets", partial(_structure_sets, ctx), roles.READ),
    ]


def _measurement_summary(ctx: Context, request: Request, study: str) -> Response:
    uid = study_uid(ctx.orthanc, study)
    return Response(200, {"study_instance_uid": uid, "rois": ctx.measurements.summary(uid)})


def _structure_sets(ctx: Context, request: Request, study: str) -> Response:
    study_id = ctx.index.study_id(study)
    if study_id is None:
        raise NotFound(f"no study {study} in Orthanc")
    return Response(200, {"orthanc_study_id": study_id,
                          "structure_sets": [s.as_dict() for s in ctx.index.of_study(study_id)],
                          "ct_series": [vars(c) for c in ctx.index.ct_series(study_id)]})

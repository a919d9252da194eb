"""/rt/measurements: query and export measurement rows; record, edit and delete manual ones."""
from __future__ import annotations

from functools import partial

from orthanc_rt.errors import NotFound
from orthanc_rt.pacs.resources import instance_uid, study_uid
from orthanc_rt.records import audit
from orthanc_rt.records import measurements as records
from orthanc_rt.records.manual_measurements import manual_fields
from orthanc_rt.records.measurements import MeasurementQuery
from orthanc_rt.records.tables import Measurement
from plugin import roles
from plugin.context import Context
from plugin.rest import HttpError, Request, Response, text_param
from plugin.router import MAX_PAGE, Route, page, page_params

_MAX_EXPORT = 100_000  # rows of one CSV export


def routes(ctx: Context) -> list[Route]:
    return [
        Route("GET", "/rt/measurements", partial(_list, ctx), roles.READ),
        Route("POST", "/rt/measurements", partial(_create, ctx), roles.MEASURE),
        Route("GET", "/rt/measurements/{measurement_id}", partial(_get, ctx), roles.READ),
        Route("PUT", "/rt/measurements/{measurement_id}", partial(_update, ctx), roles.MEASURE),
        Route("DELETE", "/rt/measurements/{measurement_id}", partial(_delete, ctx), roles.MEASURE),
    ]


def _list(ctx: Context, request: Request) -> Response:
    q = request.query
    export = q.get("format") or ""
    if export not in ("", "json", "csv"):
        raise HttpError(400, f"format: must be csv or json, got {export[:20]!r}", field="format")
    source = q.get("source") or None
    if source and source not in records.SOURCES:
        raise HttpError(400, f"source: must be one of {list(records.SOURCES)}", field="source")
    sort = q.get("sort") or "id"
    if sort.lstrip("-") not in records.SORTABLE:
        raise HttpError(400, f"sort: must be one of {list(records.SORTABLE)} (prefix - for descending)",
                        field="sort")
    limit, offset = page_params(q, 100, _MAX_EXPORT if export == "csv" else MAX_PAGE)
    study, dose = text_param(q, "study"), text_param(q, "dose")
    query = MeasurementQuery(
        study=study_uid(ctx.orthanc, study) if study else None, series=text_param(q, "series"),
        roi=text_param(q, "roi"), type=text_param(q, "type"), metric=text_param(q, "metric"), source=source,
        dose=instance_uid(ctx.orthanc, dose) if dose else None, job=text_param(q, "job"),
        sort=sort, limit=limit, offset=offset)
    rows, total = ctx.measurements.query(query)
    headers = {"X-Total-Count": str(total)}
    if export == "csv":
        return Response(200, records.to_csv(rows), content_type="text/csv; charset=utf-8", headers=headers)
    return Response(200, page([records.to_dict(m) for m in rows], total, limit, offset,
                              columns=list(records.COLUMNS)), headers=headers)


def _create(ctx: Context, request: Request) -> Response:
    fields = manual_fields(request.json())
    row = ctx.measurements.add(Measurement(source="manual", method="manual", created_by=request.user, **fields))
    audit.record(ctx.store.url, request.user, audit.MEASUREMENT_CREATED, f"measurement/{row.id}",
                 after=records.to_dict(row))
    return Response(201, records.to_dict(row))


def _get(ctx: Context, request: Request, measurement_id: str) -> Response:
    return Response(200, records.to_dict(_measurement(ctx, measurement_id)))


def _update(ctx: Context, request: Request, measurement_id: str) -> Response:
    row = _manual(ctx, measurement_id, "changed")
    existing = {name: getattr(row, name) for name in ("type", "value", "unit", "metric", "label", "roi_name",
                                                       "study_instance_uid", "series_instance_uid",
                                                       "sop_instance_uid", "frame_number", "details")}
    fields = manual_fields(request.json(), existing=existing)
    updated = ctx.measurements.update(row.id, fields)
    if updated is None:
        raise NotFound(f"no measurement {measurement_id}")
    audit.record(ctx.store.url, request.user, audit.MEASUREMENT_EDITED, f"measurement/{row.id}",
                 before=records.to_dict(row), after=records.to_dict(updated))
    return Response(200, records.to_dict(updated))


def _delete(ctx: Context, request: Request, measurement_id: str) -> Response:
    row = _manual(ctx, measurement_id, "deleted")
    ctx.measurements.delete(row.id)
    audit.record(ctx.store.url, request.user, audit.MEASUREMENT_DELETED, f"measurement/{row.id}",
                 before=records.to_dict(row))
    return Response(200, {"deleted": row.id})


def _measurement(ctx: Context, measurement_id: str) -> Measurement:
    row = ctx.measurements.get(int(measurement_id))
    if row is None:
        raise NotFound(f"no measurement {measurement_id}")
    return row


def _manual(ctx: Context, measurement_id: str, verb: str) -> Measurement:
    row = _measurement(ctx, measurement_id)
    if row.source != "manual":
        raise HttpError(409, f"measurement {measurement_id} comes from {row.source} "
                             f"({row.job_id or row.sr_instance_uid}); "
                             f"only manual measurements are {verb} here: run its analysis or import again")
    return row

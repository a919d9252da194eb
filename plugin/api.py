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
from sqlalchemy.exc import DataError, SQLAlchemyError

import orthanc_rt
from orthanc_rt.dicom import sop
from orthanc_rt.pacs.client import OrthancApi, OrthancError, get_json
from orthanc_rt.pacs.resources import frame_of_reference_of, instance_ref, sop_class_of
from orthanc_rt.planning.auto_rules import shown_settings
from orthanc_rt.records import audit, jobs
from orthanc_rt.records import measurements as records
from orthanc_rt.records.jobs import JobQuery, JobStore
from orthanc_rt.records.manual_measurements import manual_fields
from orthanc_rt.records.measurements import MeasurementQuery, MeasurementStore
from orthanc_rt.records.tables import Measurement
from orthanc_rt.scheduling.params import AnalysisParams, ValidationError, dose_params
from orthanc_rt.scheduling.queue import Dispatcher
from orthanc_rt.scheduling.reconcile import reconcile as queue_plans_without_dose
from orthanc_rt.scheduling.scheduler import Scheduler
from orthanc_rt.settings import Settings
from plugin import openapi, roles
from plugin.plan_routes import PlanRoutes
from plugin.rest import (
    HttpError,
    Request,
    Response,
    error_response,
    int_param,
    text_param,
)
from plugin.roles import Access

log = logging.getLogger("orthanc_rt.plugin")

_MAX_PAGE = 500
_SCENES_KEPT = 4
_MAX_EXPORT = 100_000  # rows of one CSV export


# What a path parameter may look like (also stated in openapi.py).
PARAM_PATTERNS = {"job_id": r"[A-Za-z0-9_.-]{1,64}", "instance_id": r"[0-9a-f-]{1,64}",
                  "measurement_id": r"[0-9]{1,9}", "study": r"[0-9A-Za-z.-]{1,64}",
                  "dose": r"[0-9A-Za-z.-]{1,64}", "workflow": r"[a-z0-9-]{1,32}",
                  "plan_id": r"[A-Za-z0-9_.-]{1,64}"}


@dataclass
class Route:
    method: str
    template: str  # "/rt/jobs/{job_id}", as in the OpenAPI description
    handler: Callable[..., Response]
    permission: str  # see plugin/roles.py

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.template)  # literal, name, literal, name, ..., literal
        return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{PARAM_PATTERNS[part]})"
                                  for i, part in enumerate(parts)))


class RtApi:
    def __init__(self, orthanc: OrthancApi, settings: Settings, store: JobStore, dispatcher: Dispatcher,
                 access: Access | None = None):
        self.orthanc = orthanc
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.access = access or Access(None, orthanc_authentication=False)
        self.scheduler = Scheduler(store, dispatcher)
        self._scenes: dict[str, object] = {}  # dose instance id -> DoseScene, oldest first
        self.measurements = MeasurementStore(store.url)
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
            Route("POST", "/rt/instances/{instance_id}/analysis", self.request_analysis, roles.COMPUTE),
            Route("GET", "/rt/measurements", self.list_measurements, roles.READ),
            Route("POST", "/rt/measurements", self.create_measurement, roles.MEASURE),
            Route("GET", "/rt/measurements/{measurement_id}", self.get_measurement, roles.READ),
            Route("PUT", "/rt/measurements/{measurement_id}", self.update_measurement, roles.MEASURE),
            Route("DELETE", "/rt/measurements/{measurement_id}", self.delete_measurement, roles.MEASURE),
            Route("GET", "/rt/studies/{study}/measurements/summary", self.study_summary, roles.READ),
            Route("GET", "/rt/doses/{dose}/dvh", self.dose_dvh, roles.READ),
            Route("GET", "/rt/doses/{dose}/dvh.png", self.dose_dvh_png, roles.READ),
            Route("GET", "/rt/doses/{dose}/overlay.png", self.dose_overlay_png, roles.READ),
        ]
        self.planning = PlanRoutes(self)
        self.routes += self.planning.routes()
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
            except DataError as exc:  # the request's values do not fit the database (range, NUL, ...)
                return error_response(400, f"a value does not fit the database: {str(exc.orig)[:200]}")
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
            "settings": shown_settings(self.settings),
        }
        return Response(200 if ok else 503, body)

    def list_jobs(self, request: Request) -> Response:
        q = request.query
        state, kind = q.get("state") or None, q.get("kind") or None
        if state and state not in jobs.STATES:
            raise HttpError(400, f"state: unknown job state {state!r}; expected one of {list(jobs.STATES)}")
        if kind and kind not in jobs.KINDS:
            raise HttpError(400, f"kind: unknown job kind {kind!r}; expected one of {list(jobs.KINDS)}")
        limit = int_param(q, "limit", 50, 1, _MAX_PAGE)
        offset = int_param(q, "offset", 0, 0, 10**9)
        rows, total = self.store.list(JobQuery(state=state, kind=kind, study=text_param(q, "study"),
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
        plan = instance_ref(self.orthanc, instance_id)
        job, created = self.scheduler.request_dose(plan, params, source="api", requested_by=request.user)
        return Response(200, {"created": created, "job": jobs.to_dict(job)})

    def request_analysis(self, request: Request, instance_id: str) -> Response:
        """Analyse the stored RTDOSE `instance_id` with the RTSTRUCT named in the body (Orthanc id)."""
        body = request.json()
        unknown = sorted(set(body) - {"structure_set"})
        if unknown:
            raise ValidationError(unknown[0], "unknown field; expected structure_set")
        structure_set_id = body.get("structure_set")
        if not isinstance(structure_set_id, str) or not structure_set_id:
            raise ValidationError("structure_set", "the Orthanc id of an RTSTRUCT is required")
        frames = {}
        for role, orthanc_id, wanted, modality in (("instance", instance_id, sop.RT_DOSE, "RTDOSE"),
                                                   ("structure_set", structure_set_id, sop.RT_STRUCTURE_SET,
                                                    "RTSTRUCT")):
            sop_class = self._sop_class(orthanc_id)
            if sop_class != wanted:
                raise HttpError(400, f"{role}: {orthanc_id} is a {sop.name_of(sop_class)}, not a "
                                     f"{sop.name_of(wanted)}", field=role)
            frames[role] = frame_of_reference_of(self.orthanc, orthanc_id, modality)
        if frames["instance"] != frames["structure_set"]:
            raise HttpError(400, f"the RTDOSE is on FrameOfReferenceUID {frames['instance']}, the RTSTRUCT on "
                                 f"{frames['structure_set']}: dose and structures must share a frame of reference",
                            field="structure_set")
        job, created = self.scheduler.request_analysis(
            instance_ref(self.orthanc, instance_id), instance_ref(self.orthanc, structure_set_id),
            AnalysisParams.from_settings(self.settings.auto_analysis), frame_of_reference_uid=frames["instance"],
            source="api", requested_by=request.user)
        return Response(200, {"created": created, "job": jobs.to_dict(job)})

    # -- measurements -----------------------------------------------------
    def list_measurements(self, request: Request) -> Response:
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
        limit = int_param(q, "limit", 100, 1, _MAX_EXPORT if export == "csv" else _MAX_PAGE)
        offset = int_param(q, "offset", 0, 0, 10**9)
        study = q.get("study") or None
        query = MeasurementQuery(
            study=self._study_uid(study) if study else None, series=q.get("series") or None,
            roi=q.get("roi") or None, type=q.get("type") or None, metric=q.get("metric") or None, source=source,
            dose=self._dose_uid(q["dose"]) if q.get("dose") else None, job=q.get("job") or None,
            sort=sort, limit=limit, offset=offset)
        rows, total = self.measurements.query(query)
        headers = {"X-Total-Count": str(total)}
        if export == "csv":
            return Response(200, records.to_csv(rows), content_type="text/csv; charset=utf-8", headers=headers)
        return Response(200, {"items": [records.to_dict(m) for m in rows], "total": total, "limit": limit,
                              "offset": offset, "columns": list(records.COLUMNS)}, headers=headers)

    def create_measurement(self, request: Request) -> Response:
        fields = manual_fields(request.json())
        row = self.measurements.add(Measurement(source="manual", method="manual", created_by=request.user,
                                                **fields))
        audit.record(self.store.url, request.user, audit.MEASUREMENT_CREATED, f"measurement/{row.id}",
                     after=records.to_dict(row))
        return Response(201, records.to_dict(row))

    def get_measurement(self, request: Request, measurement_id: str) -> Response:
        return Response(200, records.to_dict(self._measurement(measurement_id)))

    def update_measurement(self, request: Request, measurement_id: str) -> Response:
        row = self._manual(measurement_id, "changed")
        existing = {name: getattr(row, name) for name in ("type", "value", "unit", "metric", "label", "roi_name",
                                                           "study_instance_uid", "series_instance_uid",
                                                           "sop_instance_uid", "frame_number", "details")}
        fields = manual_fields(request.json(), existing=existing)
        updated = self.measurements.update(row.id, fields)
        if updated is None:
            raise HttpError(404, f"no measurement {measurement_id}")
        audit.record(self.store.url, request.user, audit.MEASUREMENT_EDITED, f"measurement/{row.id}",
                     before=records.to_dict(row), after=records.to_dict(updated))
        return Response(200, records.to_dict(updated))

    def delete_measurement(self, request: Request, measurement_id: str) -> Response:
        row = self._manual(measurement_id, "deleted")
        self.measurements.delete(row.id)
        audit.record(self.store.url, request.user, audit.MEASUREMENT_DELETED, f"measurement/{row.id}",
                     before=records.to_dict(row))
        return Response(200, {"deleted": row.id})

    def study_summary(self, request: Request, study: str) -> Response:
        uid = self._study_uid(study)
        return Response(200, {"study_instance_uid": uid, "rois": self.measurements.summary(uid)})

    def dose_dvh(self, request: Request, dose: str) -> Response:
        uid = self._dose_uid(dose)
        curves = [records.curve_dict(c) for c in self.measurements.curves(uid)]
        if not curves:
            raise HttpError(404, f"no DVH for dose {dose}: not analysed (yet), or no structure set of its frame")
        return Response(200, {"dose_sop_instance_uid": uid, "curves": curves})

    def dose_dvh_png(self, request: Request, dose: str) -> Response:
        from orthanc_rt.rendering.dvh_plot import (
            dvh_png,  # matplotlib only when a plot is asked for
        )

        uid = self._dose_uid(dose)
        curves = [records.curve_dict(c) for c in self.measurements.curves(uid)]
        if not curves:
            raise HttpError(404, f"no DVH for dose {dose}: not analysed (yet), or no structure set of its frame")
        return Response(200, dvh_png(curves, title=f"Cumulative DVH, RTDOSE {uid}"), content_type="image/png")

    def dose_overlay_png(self, request: Request, dose: str) -> Response:
        from orthanc_rt.rendering.overlay import (
            DEFAULT_LEVELS_PCT,
            OverlayError,
            render_png,
        )
        from orthanc_rt.rendering.render_thread import render

        q = request.query
        try:
            levels = [float(v) for v in q["levels"].split(",")] if q.get("levels") else list(DEFAULT_LEVELS_PCT)
            reference = float(q["reference_gy"]) if q.get("reference_gy") else None
        except ValueError:
            raise HttpError(400, "levels and reference_gy: numbers, e.g. levels=50,95,107&reference_gy=2") from None
        if any(not 0 < v <= 200 for v in levels) or len(levels) > 10 or (reference is not None and not reference > 0):
            raise HttpError(400, "levels: up to 10 percentages in (0, 200]; reference_gy: > 0")
        scene = self._dose_scene(dose)
        index = int_param(q, "slice", -1, -1, 100_000)
        try:
            png = render(render_png, scene.ct, scene.dose, scene.outlines, plane=q.get("plane", "axial"),
                         index=None if index < 0 else index, window=q.get("window", "soft-tissue"),
                         levels_pct=levels, reference_gy=reference)
        except OverlayError as exc:
            raise HttpError(400, str(exc)) from None
        return Response(200, png, content_type="image/png")

    # -- helpers ----------------------------------------------------------
    def _dose_scene(self, dose_instance_id: str):
        """The dose, its CT and structures, kept for the last few doses viewed (slices are browsed)."""
        from orthanc_rt.errors import DicomInputError
        from orthanc_rt.pacs.inputs import InputNotReady
        from orthanc_rt.rendering.dose_scene import load_dose_scene

        if self._sop_class(dose_instance_id) != sop.RT_DOSE:
            raise HttpError(400, f"instance {dose_instance_id} is not an RT Dose")
        if dose_instance_id not in self._scenes:
            try:
                scene = load_dose_scene(self.orthanc, dose_instance_id)
            except InputNotReady as exc:
                raise HttpError(409, f"cannot draw the dose yet: {exc}") from None
            except DicomInputError as exc:
                raise HttpError(422, str(exc)) from None
            while len(self._scenes) >= _SCENES_KEPT:
                self._scenes.pop(next(iter(self._scenes)))
            self._scenes[dose_instance_id] = scene
        return self._scenes[dose_instance_id]

    def _sop_class(self, instance_id: str) -> str:
        try:
            return sop_class_of(self.orthanc, instance_id)
        except OrthancError as exc:
            if exc.status == 404:
                raise HttpError(404, f"no instance {instance_id} in Orthanc") from None
            raise

    def _measurement(self, measurement_id: str) -> Measurement:
        row = self.measurements.get(int(measurement_id))
        if row is None:
            raise HttpError(404, f"no measurement {measurement_id}")
        return row

    def _manual(self, measurement_id: str, verb: str) -> Measurement:
        row = self._measurement(measurement_id)
        if row.source != "manual":
            raise HttpError(409, f"measurement {measurement_id} comes from {row.source} ({row.job_id or row.sr_instance_uid}); "
                                 f"only manual measurements are {verb} here: run its analysis or import again")
        return row

    def _study_uid(self, study: str) -> str:
        """A StudyInstanceUID as given, or the UID of an Orthanc study id."""
        return self._uid_of(study, "studies", "StudyInstanceUID")

    def _dose_uid(self, dose: str) -> str:
        """An RTDOSE SOPInstanceUID as given, or the UID of an Orthanc instance id."""
        return self._uid_of(dose, "instances", "SOPInstanceUID")

    def _uid_of(self, value: str, level: str, tag: str) -> str:
        if "-" not in value:  # DICOM UIDs are digits and dots; Orthanc ids are dashed hex
            return value
        try:
            return get_json(self.orthanc, f"/{level}/{value}")["MainDicomTags"][tag]
        except OrthancError as exc:
            if exc.status == 404:
                raise HttpError(404, f"no {level[:-1] if level != 'studies' else 'study'} {value} in Orthanc") \
                    from None
            raise


    def openapi(self, request: Request) -> Response:
        return Response(200, openapi.spec(orthanc_rt.__version__))

    def reconcile(self, request: Request) -> Response:
        result = queue_plans_without_dose(self.orthanc, self.scheduler, self.settings.auto_dose, actor=request.user)
        return Response(200, result)

    def list_audit(self, request: Request) -> Response:
        q = request.query
        limit = int_param(q, "limit", 100, 1, _MAX_PAGE)
        offset = int_param(q, "offset", 0, 0, 10**9)
        rows, total = audit.query(self.store.url, audit.AuditQuery(
            actor=text_param(q, "actor"), action=text_param(q, "action"), subject=text_param(q, "subject"),
            since=_time_param(q, "since"), until=_time_param(q, "until"), limit=limit, offset=offset))
        return Response(200, {"items": rows, "total": total, "limit": limit, "offset": offset})

    def verify_audit(self, request: Request) -> Response:
        return Response(200, audit.verify(self.store.url))


def _time_param(query: dict[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise HttpError(400, f"{name}: expected an ISO 8601 date-time, got {raw[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

"""Measurement rows and DVH curves in the database: replace-by-owner, query, summary, export forms.

Computed rows are owned by what produced them: an analysis job (`job_id`)
or an imported SR (`sr_instance_uid`). Running the owner again replaces its
rows in one transaction (delete, then insert), so a re-sent dose or SR never
duplicates them and a failure leaves the previous rows in place. Manual rows
belong to their authors and change only through the REST routes.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import delete, select

from orthanc_rt.records.db import aware, paged, read_scope, session_scope
from orthanc_rt.records.tables import DoseLetHistogram, DvhCurve, Measurement, utcnow

SOURCES = ("dvh", "image", "manual", "sr", "let", "robustness")  # let: per-ROI LETd of a dose job with LET;
# robustness: clinical goals per error scenario and their worst case (worker.jobs.robustness)
# Export columns, in this order, for CSV and JSON alike: their names are a stable interface.
COLUMNS = ("id", "source", "type", "metric", "value", "unit", "label", "roi_number", "roi_name",
           "study_instance_uid", "series_instance_uid", "sop_instance_uid", "frame_number",
           "dose_sop_instance_uid", "dose_series_instance_uid", "structure_set_sop_instance_uid",
           "structure_set_series_instance_uid", "ct_series_instance_uid", "job_id", "sr_instance_uid", "method",
           "created_by", "created_at", "updated_at")
SORTABLE = ("id", "created_at", "updated_at", "value", "metric", "roi_name", "type", "source")


@dataclass(frozen=True)
class MeasurementQuery:
    study: str | None = None
    series: str | None = None
    roi: str | None = None  # ROI name (exact) or number
    type: str | None = None
    metric: str | None = None
    source: str | None = None
    dose: str | None = None  # RTDOSE SOPInstanceUID
    job: str | None = None
    sort: str = "id"  # a SORTABLE column, "-" in front for descending
    limit: int = 100
    offset: int = 0


class MeasurementStore:
    def __init__(self, database_url: str):
        self.url = database_url

    # -- computed rows ----------------------------------------------------
    def replace_job_results(self, job_id: str, measurements: Sequence[Measurement],
                            curves: Sequence[DvhCurve | DoseLetHistogram]) -> None:
        """The job's rows, replacing what an earlier run of it recorded (measurements, DVH and DLVH curves)."""
        with session_scope(self.url) as s:
            for table in (Measurement, DvhCurve, DoseLetHistogram):
                s.execute(delete(table).where(table.job_id == job_id))
            s.add_all([*measurements, *curves])

    def replace_sr_results(self, sr_instance_uid: str, measurements: Sequence[Measurement]) -> None:
        with session_scope(self.url) as s:
            s.execute(delete(Measurement).where(Measurement.sr_instance_uid == sr_instance_uid,
                                                Measurement.source == "sr"))
            s.add_all(list(measurements))

    # -- single rows ------------------------------------------------------
    def add(self, row: Measurement) -> Measurement:
        with session_scope(self.url) as s:
            s.add(row)
            s.flush()
            s.refresh(row)
            return row

    def get(self, measurement_id: int) -> Measurement | None:
        with session_scope(self.url) as s:
            return s.get(Measurement, measurement_id)

    def update(self, measurement_id: int, fields: dict[str, Any]) -> Measurement | None:
        with session_scope(self.url) as s:
            row = s.get(Measurement, measurement_id)
            if row is None:
                return None
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            s.flush()
            s.refresh(row)
            return row

    def delete(self, measurement_id: int) -> bool:
        with session_scope(self.url) as s:
            return s.execute(delete(Measurement).where(Measurement.id == measurement_id)).rowcount == 1

    # -- queries ----------------------------------------------------------
    def query(self, q: MeasurementQuery) -> tuple[list[Measurement], int]:
        stmt = select(Measurement)
        for column, value in ((Measurement.study_instance_uid, q.study), (Measurement.series_instance_uid, q.series),
                              (Measurement.type, q.type), (Measurement.metric, q.metric),
                              (Measurement.source, q.source), (Measurement.dose_sop_instance_uid, q.dose),
                              (Measurement.job_id, q.job)):
            if value:
                stmt = stmt.where(column == value)
        if q.roi:
            stmt = stmt.where(Measurement.roi_number == int(q.roi)) if q.roi.isdigit() \
                else stmt.where(Measurement.roi_name == q.roi)
        name = q.sort.lstrip("-")
        column = getattr(Measurement, name)
        # The id breaks ties in the same direction, so one index on (column, id) serves both directions.
        order = (column.desc(), Measurement.id.desc()) if q.sort.startswith("-") else (column.asc(),
                                                                                         Measurement.id.asc())
        with read_scope(self.url) as s:
            return paged(s, stmt, order, q.limit, q.offset)

    def summary(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """One line per (dose, structure set, ROI) of the study: its computed metrics side by side."""
        with session_scope(self.url) as s:
            rows = s.scalars(select(Measurement).where(Measurement.study_instance_uid == study_instance_uid,
                                                       Measurement.source.in_(["dvh", "image", "let"]))
                             .order_by(Measurement.dose_sop_instance_uid, Measurement.roi_number,
                                       Measurement.id)).all()
        table: dict[tuple, dict[str, Any]] = {}
        for m in rows:
            key = (m.dose_sop_instance_uid, m.structure_set_sop_instance_uid, m.roi_number)
            line = table.setdefault(key, {
                "dose_sop_instance_uid": m.dose_sop_instance_uid,
                "structure_set_sop_instance_uid": m.structure_set_sop_instance_uid,
                "roi_number": m.roi_number, "roi_name": m.roi_name, "job_id": m.job_id, "metrics": {}, "units": {}})
            line["metrics"][m.metric] = m.value
            line["units"][m.metric] = m.unit
        return list(table.values())

    def dose_let_histograms(self, dose_sop_instance_uid: str) -> list[DoseLetHistogram]:
        with session_scope(self.url) as s:
            return list(s.scalars(select(DoseLetHistogram)
                                  .where(DoseLetHistogram.dose_sop_instance_uid == dose_sop_instance_uid)
                                  .order_by(DoseLetHistogram.roi_number, DoseLetHistogram.roi_name)))

    def curves(self, dose_sop_instance_uid: str) -> list[DvhCurve]:
        with session_scope(self.url) as s:
            return list(s.scalars(select(DvhCurve).where(DvhCurve.dose_sop_instance_uid == dose_sop_instance_uid)
                                  .order_by(DvhCurve.structure_set_sop_instance_uid, DvhCurve.roi_number)))


def to_dict(m: Measurement) -> dict[str, Any]:
    out = {name: getattr(m, name) for name in COLUMNS}
    for name in ("created_at", "updated_at"):
        out[name] = aware(out[name]).isoformat() if out[name] else None
    out["details"] = m.details or {}
    return out


def to_csv(rows: Iterable[Measurement]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for m in rows:
        d = to_dict(m)
        writer.writerow(["" if d[c] is None else d[c] for c in COLUMNS])
    return buffer.getvalue().encode("utf-8")


def curve_dict(c: DvhCurve) -> dict[str, Any]:
    values = (c.volume_pct or {}).get("values", [])
    return {"roi_number": c.roi_number, "roi_name": c.roi_name, "color": c.roi_color, "volume_cc": c.volume_cc,
            "structure_set_sop_instance_uid": c.structure_set_sop_instance_uid, "job_id": c.job_id,
            "bin_width_gy": c.bin_width_gy,
            "dose_gy": [round(i * c.bin_width_gy, 6) for i in range(len(values))], "volume_pct": values}


def dose_let_histogram_dict(h: DoseLetHistogram) -> dict[str, Any]:
    return {"roi_number": h.roi_number, "roi_name": h.roi_name, "voxels": h.voxels, "threshold_gy": h.threshold_gy,
            "structure_set_sop_instance_uid": h.structure_set_sop_instance_uid, "job_id": h.job_id,
            "let_sop_instance_uid": h.let_sop_instance_uid, **(h.histogram or {})}

"""Database tables (SQLAlchemy 2). Alembic migrations in `migrations/` create them."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Job(Base):
    """One unit of RT work; its id is derived from what it computes (see jobs.job_id)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(24), index=True)
    stage: Mapped[str] = mapped_column(String(64), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16), default="api")  # auto | api | reconcile
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    orthanc_study_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    wait_deadline: Mapped[datetime | None] = mapped_column(nullable=True)

    events: Mapped[list["JobEvent"]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )

    # Lists are newest first with the id as tie-breaker (JobStore.list): these indexes serve the pages
    # without sorting the table (migration 0004).
    __table_args__ = (Index("ix_jobs_kind_created", "kind", "created_at"),
                      Index("ix_jobs_created_id", "created_at", "id"),
                      Index("ix_jobs_state_kind_created", "state", "kind", "created_at", "id"))


class JobEvent(Base):
    """The history of a job: every state change, retry and worker that touched it."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(24))
    stage: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128), default="")  # worker host:pid, plugin, user

    job: Mapped[Job] = relationship(back_populates="events")


class DurationTotal(Base):
    """Running totals of how long jobs ran and how long their stages took, one row per histogram bucket.

    /rt/metrics reads these few rows instead of every job's history, so a scrape costs the same however many
    jobs the database holds (`orthanc_rt.records.durations`). `family` is "job" (label: the final state) or
    "stage" (label: the stage's name); `bucket` indexes durations.BUCKETS_S, its length meaning +Inf;
    `count` and `seconds` are of the durations that fell in that bucket (not cumulative).
    """

    __tablename__ = "duration_totals"

    family: Mapped[str] = mapped_column(String(8), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class Measurement(Base):
    """One measured value with its provenance (a DVH metric, an image statistic, a manual or SR measurement).

    `source` says where it came from: dvh | image (computed by an analysis
    job, `job_id` set), manual (REST, `created_by` set), sr (imported from a
    DICOM SR, `sr_instance_uid` set). Rows of a job are replaced as a whole
    when the job runs again, so a re-sent dose never duplicates them.
    """

    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16), index=True)
    type: Mapped[str] = mapped_column(String(16), index=True)  # dose, volume, distance, area, angle, hounsfield
    metric: Mapped[str] = mapped_column(String(32), index=True)  # Dmean, D95, V20Gy, HUmean, length, ...
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(128), default="")
    label: Mapped[str] = mapped_column(String(128), default="")
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    frame_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dose_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    dose_series_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    structure_set_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    structure_set_series_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    ct_series_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    roi_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    roi_name: Mapped[str] = mapped_column(String(64), default="", index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    sr_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    # Sorted pages (MeasurementStore.query; id breaks ties in the sort's direction) walk these (migration 0004).
    __table_args__ = (Index("ix_measurements_created_id", "created_at", "id"),
                      Index("ix_measurements_metric_value_id", "metric", "value", "id"))


class DvhCurve(Base):
    """The cumulative DVH of one ROI on one dose: volume (% of the ROI) at doses 0, bin, 2·bin, ... Gy."""

    __tablename__ = "dvh_curves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    dose_sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    structure_set_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    roi_number: Mapped[int] = mapped_column(Integer)
    roi_name: Mapped[str] = mapped_column(String(64), default="")
    roi_color: Mapped[str] = mapped_column(String(16), default="")  # "#rrggbb" from ROIDisplayColor
    volume_cc: Mapped[float] = mapped_column(Float)
    bin_width_gy: Mapped[float] = mapped_column(Float)
    volume_pct: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"values": [...]} (JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DoseLetHistogram(Base):
    """The cumulative dose-LET volume histogram of one ROI on one dose (orthanc_rt.analysis.let): volume (% of the
    ROI) with dose >= dose_gy[i] and LETd >= let_kev_um[j], from the LETd map of the dose job that made it."""

    __tablename__ = "dose_let_histograms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    dose_sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    let_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    structure_set_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    roi_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    roi_name: Mapped[str] = mapped_column(String(64), default="")
    voxels: Mapped[int] = mapped_column(Integer)
    threshold_gy: Mapped[float] = mapped_column(Float)
    histogram: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"dose_gy", "let_kev_um", "volume_pct"}
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Plan(Base):
    """A treatment plan asked of Orthanc-RT: the request, where it came from, and the job that makes it.

    The job (kind "plan", id derived from the plan id) holds the state, the
    progress and the results (RTPLAN/RTDOSE ids, QA summary); a deleted plan
    keeps its row (`deleted_at`) for the record.
    """

    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    workflow: Mapped[str] = mapped_column(String(32), index=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    orthanc_study_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    ct_series_instance_uid: Mapped[str] = mapped_column(String(64), default="")
    structure_set_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    target_roi: Mapped[str] = mapped_column(String(64), default="")
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(80), default="api")  # api | batch | rule:<name>
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deleted_by: Mapped[str] = mapped_column(String(128), default="")


class AuditEntry(Base):
    """One appended state change; `hash` chains it to the entry before (see orthanc_rt/records/audit.py)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128), default="", index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128), default="", index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))


class Check(Base):
    """The verdict of one dose check (recompute vs TPS dose, or any two doses), with its provenance.

    The id is the check job's: a check run again replaces its row. `results`
    holds every pass rate, the per-ROI table and the dose-difference
    statistics; `provenance` the engine, versions, checksums, primaries and
    who or what asked (orthanc_rt/records/checks.py).
    """

    __tablename__ = "checks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # recompute | pair
    study_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    orthanc_study_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    plan_sop_instance_uid: Mapped[str] = mapped_column(String(64), default="", index=True)
    reference_sop_instance_uids: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"uids": [...]}
    evaluated_sop_instance_uids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    criteria: Mapped[str] = mapped_column(String(64), default="")
    pass_rate_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    verdict: Mapped[str] = mapped_column(String(8), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    report_orthanc_id: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(16), default="api")
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

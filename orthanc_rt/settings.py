"""Settings shared by the plugin and the workers.

The plugin reads the `OrthancRT` section of Orthanc's configuration; workers
read `ORTHANC_RT_*` environment variables. Both produce the same `Settings`,
so there is one list of options and one set of defaults (README documents it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from orthanc_rt.planning.auto_rules import AutoPlanning


def default_data_dir() -> Path:
    return Path(os.environ.get("ORTHANC_RT_DATA_DIR", Path.cwd() / "var")).resolve()


@dataclass(frozen=True)
class AutoDose:
    """When an ion plan arrives, compute its dose without being asked."""

    enabled: bool = True
    primaries: int = 1_000_000
    scoring_spacing_mm: float | None = None  # None: the CT grid
    wait_for_ct_seconds: int = 3600  # a plan whose CT never arrives fails after this


@dataclass(frozen=True)
class AutoAnalysis:
    """When an RTDOSE and an RTSTRUCT of one frame of reference are both in Orthanc, analyse the pair."""

    enabled: bool = True
    d_at_volume_pct: tuple[float, ...] = (98.0, 95.0, 50.0, 2.0)  # D98, D95, D50, D2
    v_at_dose_gy: tuple[float, ...] = (20.0,)  # V20Gy
    v_at_dose_pct: tuple[float, ...] = (95.0,)  # V95% (of reference_dose_gy, else of the dose maximum)
    reference_dose_gy: float | None = None
    import_sr: bool = True  # import TID 1500 measurement reports (OHIF) as measurements


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    orthanc_url: str = "http://127.0.0.1:8042"  # how workers reach Orthanc's REST API
    orthanc_username: str = ""
    orthanc_password: str = ""
    work_dir: str = ""  # per-job MCsquare folders live below it
    mcsquare_threads: int = 0  # 0: every core MCsquare can see
    # Plan jobs hand their beamlets to every worker as sub-jobs of at most this many spots (worker.engines.beamlet_fanout).
    distributed_beamlets: bool = True
    beamlet_split_spots: int = 500
    dose_job_timeout_seconds: int = 3 * 3600
    viewer_url: str = ""  # OHIF, for links from Orthanc Explorer ("" : no link)
    worker_heartbeat_seconds: int = 30  # a killed worker's job is taken up about this + 60 s later
    worker_maintenance_seconds: int = 60  # how often workers look for abandoned jobs
    auto_dose: AutoDose = field(default_factory=AutoDose)
    auto_analysis: AutoAnalysis = field(default_factory=AutoAnalysis)
    auto_planning: AutoPlanning = field(default_factory=AutoPlanning)
    plan_job_timeout_seconds: int = 6 * 3600  # beamlets + optimisation + final dose of a large plan

    def __post_init__(self) -> None:
        data = default_data_dir()
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data / 'orthanc-rt.sqlite'}")
        if not self.work_dir:
            object.__setattr__(self, "work_dir", str(data / "jobs"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def get(name: str, default: Any) -> Any:
            return env.get(f"ORTHANC_RT_{name}", default)

        auto = AutoDose(
            enabled=_as_bool(get("AUTO_DOSE", "true")),
            primaries=int(get("AUTO_DOSE_PRIMARIES", AutoDose.primaries)),
            scoring_spacing_mm=_as_optional_float(get("AUTO_DOSE_SCORING_SPACING_MM", "")),
            wait_for_ct_seconds=int(get("WAIT_FOR_CT_SECONDS", AutoDose.wait_for_ct_seconds)),
        )
        return cls(
            database_url=get("DATABASE_URL", ""),
            redis_url=get("REDIS_URL", cls.redis_url),
            orthanc_url=get("ORTHANC_URL", cls.orthanc_url),
            orthanc_username=get("ORTHANC_USERNAME", ""),
            orthanc_password=get("ORTHANC_PASSWORD", ""),
            work_dir=get("WORK_DIR", ""),
            mcsquare_threads=int(get("MCSQUARE_THREADS", 0)),
            distributed_beamlets=_as_bool(get("DISTRIBUTED_BEAMLETS", "true")),
            beamlet_split_spots=int(get("BEAMLET_SPLIT_SPOTS", cls.beamlet_split_spots)),
            dose_job_timeout_seconds=int(get("DOSE_JOB_TIMEOUT_SECONDS", cls.dose_job_timeout_seconds)),
            plan_job_timeout_seconds=int(get("PLAN_JOB_TIMEOUT_SECONDS", cls.plan_job_timeout_seconds)),
            worker_heartbeat_seconds=int(get("WORKER_HEARTBEAT_SECONDS", cls.worker_heartbeat_seconds)),
            worker_maintenance_seconds=int(get("WORKER_MAINTENANCE_SECONDS", cls.worker_maintenance_seconds)),
            auto_dose=auto,
            auto_analysis=AutoAnalysis(enabled=_as_bool(get("AUTO_ANALYSIS", "true"))),
        )

    @classmethod
    def from_orthanc_config(cls, config: Mapping[str, Any]) -> "Settings":
        """Read the `OrthancRT` section of Orthanc's configuration (keys in Orthanc's CamelCase)."""
        section = dict(config.get("OrthancRT", {}))
        auto_cfg = dict(section.get("AutoDose", {}))
        base = cls.from_env({})
        auto = AutoDose(
            enabled=bool(auto_cfg.get("Enabled", AutoDose.enabled)),
            primaries=int(auto_cfg.get("Primaries", AutoDose.primaries)),
            scoring_spacing_mm=_as_optional_float(auto_cfg.get("ScoringSpacingMm")),
            wait_for_ct_seconds=int(auto_cfg.get("WaitForCtSeconds", AutoDose.wait_for_ct_seconds)),
        )
        return replace(
            base,
            database_url=section.get("DatabaseUrl", base.database_url),
            redis_url=section.get("RedisUrl", base.redis_url),
            work_dir=section.get("WorkDir", base.work_dir),
            dose_job_timeout_seconds=int(section.get("DoseJobTimeoutSeconds", base.dose_job_timeout_seconds)),
            plan_job_timeout_seconds=int(section.get("PlanJobTimeoutSeconds", base.plan_job_timeout_seconds)),
            viewer_url=str(section.get("ViewerUrl", "")),
            auto_dose=auto,
            auto_analysis=_auto_analysis(dict(section.get("AutoAnalysis", {}))),
            auto_planning=AutoPlanning.from_config(dict(section.get("AutoPlanning", {}))),
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as shown in /rt/health and logs: no credentials."""
        return {
            "database": _redact_url(self.database_url),
            "redis": _redact_url(self.redis_url),
            "orthanc_url": _redact_url(self.orthanc_url),
            "mcsquare_threads": self.mcsquare_threads,
            "distributed_beamlets": self.distributed_beamlets,
            "beamlet_split_spots": self.beamlet_split_spots,
            "dose_job_timeout_seconds": self.dose_job_timeout_seconds,
            "auto_dose": {
                "enabled": self.auto_dose.enabled,
                "primaries": self.auto_dose.primaries,
                "scoring_spacing_mm": self.auto_dose.scoring_spacing_mm,
                "wait_for_ct_seconds": self.auto_dose.wait_for_ct_seconds,
            },
            "auto_analysis": {name: getattr(self.auto_analysis, name)
                              for name in AutoAnalysis.__dataclass_fields__},
            "plan_job_timeout_seconds": self.plan_job_timeout_seconds,
            "auto_planning": {"enabled": self.auto_planning.enabled,
                              "rules": [{"name": r.name, "target_pattern": r.target_pattern, "workflow": r.workflow,
                                         "protocol": r.protocol, "enabled": r.enabled}
                                        for r in self.auto_planning.rules],
                              "problems": self.auto_planning.problems()},
        }


def _auto_analysis(cfg: Mapping[str, Any]) -> AutoAnalysis:
    d = AutoAnalysis()
    floats = lambda key, default: tuple(float(v) for v in cfg.get(key, default))  # noqa: E731
    return AutoAnalysis(enabled=bool(cfg.get("Enabled", d.enabled)),
                        d_at_volume_pct=floats("DoseAtVolumePct", d.d_at_volume_pct),
                        v_at_dose_gy=floats("VolumeAtDoseGy", d.v_at_dose_gy),
                        v_at_dose_pct=floats("VolumeAtDosePct", d.v_at_dose_pct),
                        reference_dose_gy=_as_optional_float(cfg.get("ReferenceDoseGy")),
                        import_sr=bool(cfg.get("ImportSr", d.import_sr)))


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def redact_url(url: str) -> str:
    """`url` without the user:password part (for logs, errors and /rt/health)."""
    return _redact_url(url)


def _redact_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"

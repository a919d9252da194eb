"""The one configuration reader: the `ORTHANC_RT_*` environment variables and Orthanc's `OrthancRT` section.

`ENVIRONMENT` lists every `ORTHANC_RT_*` variable with its one default;
`from_environment` reads them. Two things build on it:

- `Settings`, what the plugin and the workers run with. Workers read the
  environment (`Settings.from_env`); the plugin reads the `OrthancRT` section
  of Orthanc's configuration (`Settings.from_orthanc_config`, keys in
  Orthanc's CamelCase), which the launcher writes from the same variables.
  Both give the same `Settings`, so there is one list of options and one set
  of defaults (docs/configuration.md documents them).
- The launcher's `orthanc_rt.ops.stack.StackConfig`, which also passes the
  variables' values on to the processes it starts.

The automatic planning rules (`OrthancRT.AutoPlanning`) are kept as
configured; `orthanc_rt.planning.auto_rules` parses and checks them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

# The checkout (or installed tree) this package belongs to; its var/ is the default data folder.
PROJECT_DIR = Path(__file__).resolve().parents[1]


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_yes(value: Any) -> bool:
    # ORTHANC_RT_REMOTE_ACCESS has always taken only these spellings (no "on", no blanks); kept so.
    return str(value).lower() in ("1", "true", "yes")


def _as_optional_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _as_resolved_path(value: Any) -> Path:
    return Path(value).resolve()


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its value when unset, and how its text becomes a value."""

    name: str
    default: Any
    parse: Callable[[Any], Any] = str


# Every ORTHANC_RT_* variable, by the name the code uses for it. Read by `from_environment`; the plugin
# reads none of them directly (the launcher writes their values into Orthanc's configuration).
ENVIRONMENT: dict[str, Variable] = {
    # Everyone: where files live, the database, the queue.
    "data_dir": Variable("ORTHANC_RT_DATA_DIR", PROJECT_DIR / "var", _as_resolved_path),
    "database_url": Variable("ORTHANC_RT_DATABASE_URL", ""),  # "": a SQLite file in the data folder
    "redis_url": Variable("ORTHANC_RT_REDIS_URL", "redis://127.0.0.1:6379/0"),
    # Orthanc as the workers reach it ("": on this host, at ORTHANC_RT_HTTP_PORT) and their Orthanc user.
    "orthanc_url": Variable("ORTHANC_RT_ORTHANC_URL", ""),
    "orthanc_username": Variable("ORTHANC_RT_ORTHANC_USERNAME", ""),
    "orthanc_password": Variable("ORTHANC_RT_ORTHANC_PASSWORD", ""),
    "mcsquare_threads": Variable("ORTHANC_RT_MCSQUARE_THREADS", 0, int),  # 0: every core MCsquare can see
    # Workers.
    # The machine MCsquare simulates: a BDL file and a CT calibration folder. "": the ones shipped inside the
    # installed OpenTPS, never OpenTPS's per-user ~/.config/openTPS (it outlives the virtualenv it names).
    "beam_model": Variable("ORTHANC_RT_BEAM_MODEL", ""),
    "ct_calibration": Variable("ORTHANC_RT_CT_CALIBRATION", ""),
    "work_dir": Variable("ORTHANC_RT_WORK_DIR", ""),  # "": jobs/ in the data folder
    "distributed_beamlets": Variable("ORTHANC_RT_DISTRIBUTED_BEAMLETS", True, _as_bool),
    "beamlet_split_spots": Variable("ORTHANC_RT_BEAMLET_SPLIT_SPOTS", 500, int),
    "dose_job_timeout_seconds": Variable("ORTHANC_RT_DOSE_JOB_TIMEOUT_SECONDS", 3 * 3600, int),
    "plan_job_timeout_seconds": Variable("ORTHANC_RT_PLAN_JOB_TIMEOUT_SECONDS", 6 * 3600, int),
    "worker_heartbeat_seconds": Variable("ORTHANC_RT_WORKER_HEARTBEAT_SECONDS", 30, int),
    "worker_maintenance_seconds": Variable("ORTHANC_RT_WORKER_MAINTENANCE_SECONDS", 60, int),
    "auto_dose": Variable("ORTHANC_RT_AUTO_DOSE", True, _as_bool),
    "auto_dose_primaries": Variable("ORTHANC_RT_AUTO_DOSE_PRIMARIES", 1_000_000, int),
    "auto_dose_scoring_spacing_mm": Variable("ORTHANC_RT_AUTO_DOSE_SCORING_SPACING_MM", None, _as_optional_float),
    "wait_for_ct_seconds": Variable("ORTHANC_RT_WAIT_FOR_CT_SECONDS", 3600, int),
    "auto_analysis": Variable("ORTHANC_RT_AUTO_ANALYSIS", True, _as_bool),
    # The launcher.
    "orthanc_binary": Variable("ORTHANC_RT_ORTHANC_BINARY", "/usr/sbin/Orthanc"),
    "http_port": Variable("ORTHANC_RT_HTTP_PORT", 8042, int),
    "dicom_port": Variable("ORTHANC_RT_DICOM_PORT", 4242, int),
    "stable_age": Variable("ORTHANC_RT_STABLE_AGE", 5, int),
    "workers": Variable("ORTHANC_RT_WORKERS", 1, int),
    "viewer_port": Variable("ORTHANC_RT_VIEWER_PORT", 3000, int),
    "remote_access": Variable("ORTHANC_RT_REMOTE_ACCESS", False, _as_yes),
    "config_template": Variable("ORTHANC_RT_CONFIG_TEMPLATE", PROJECT_DIR / "orthanc_config" / "orthanc.json", Path),
    "users_file": Variable("ORTHANC_RT_USERS_FILE", ""),
    "client_user": Variable("ORTHANC_RT_CLIENT_USER", ""),
    "client_password": Variable("ORTHANC_RT_CLIENT_PASSWORD", ""),
    # Where the user commands and orthanc_rt.client reach Orthanc-RT ("": ORTHANC_RT_ORTHANC_URL, else this host).
    "client_url": Variable("ORTHANC_RT_CLIENT_URL", ""),
    "orthanc_index_url": Variable("ORTHANC_RT_ORTHANC_INDEX_URL", ""),
    "orthanc_storage": Variable("ORTHANC_RT_ORTHANC_STORAGE", "files"),
    # The launcher's supervisor restarts what dies (Orthanc, workers, viewer, a local Redis); off: nothing does.
    "supervise": Variable("ORTHANC_RT_SUPERVISE", True, _as_bool),
}


def from_environment(key: str, env: Mapping[str, str] | None = None) -> Any:
    """The value of `ENVIRONMENT[key]` in `env` (default: this process's environment), or its default."""
    variable = ENVIRONMENT[key]
    env = os.environ if env is None else env
    # The default goes through `parse` too, as a set value would (the data folder is resolved either way).
    return variable.parse(env.get(variable.name, variable.default))


def default_of(key: str) -> Any:
    """The value of `ENVIRONMENT[key]` when the variable is not set."""
    return from_environment(key, {})


def local_orthanc_url(http_port: int, *, ssl: bool = False) -> str:
    """Orthanc's REST API on this host."""
    return f"{'https' if ssl else 'http'}://127.0.0.1:{http_port}"


# Settings only workers use: the plugin's values of these are defaults it never reads, so /rt/health shows each
# worker's own (published in Redis, `Settings.for_workers`) instead.
WORKER_ONLY = ("mcsquare_threads", "distributed_beamlets", "beamlet_split_spots", "beam_model", "ct_calibration")


def default_data_dir() -> Path:
    """The data folder of this process (ORTHANC_RT_DATA_DIR, else the project's var/)."""
    return from_environment("data_dir")


@dataclass(frozen=True)
class AutoDose:
    """When an ion plan arrives, compute its dose without being asked."""

    enabled: bool = default_of("auto_dose")
    primaries: int = default_of("auto_dose_primaries")
    scoring_spacing_mm: float | None = default_of("auto_dose_scoring_spacing_mm")  # None: the CT grid
    wait_for_ct_seconds: int = default_of("wait_for_ct_seconds")  # a plan whose CT never arrives fails after this
    # LETd and RBE-weighted dose for every automatic dose (AutoDose.Let, .RbeModel, .AlphaBetaGy, .AlphaBetaByRoi
    # in Orthanc's configuration), validated like a request's fields (orthanc_rt.scheduling.params.auto_dose_params).
    let: bool = False
    rbe_model: str | None = None
    alpha_beta_gy: float | None = None
    alpha_beta_by_roi: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class AutoAnalysis:
    """When an RTDOSE and an RTSTRUCT of one frame of reference are both in Orthanc, analyse the pair."""

    enabled: bool = default_of("auto_analysis")
    d_at_volume_pct: tuple[float, ...] = (98.0, 95.0, 50.0, 2.0)  # D98, D95, D50, D2
    v_at_dose_gy: tuple[float, ...] = (20.0,)  # V20Gy
    v_at_dose_pct: tuple[float, ...] = (95.0,)  # V95% (of reference_dose_gy, else of the dose maximum)
    reference_dose_gy: float | None = None
    import_sr: bool = True  # import TID 1500 measurement reports (OHIF) as measurements


@dataclass(frozen=True)
class Settings:
    database_url: str = default_of("database_url")
    redis_url: str = default_of("redis_url")
    orthanc_url: str = local_orthanc_url(default_of("http_port"))  # how workers reach Orthanc's REST API
    orthanc_username: str = default_of("orthanc_username")
    orthanc_password: str = default_of("orthanc_password")
    work_dir: str = default_of("work_dir")  # per-job MCsquare folders live below it
    mcsquare_threads: int = default_of("mcsquare_threads")
    beam_model: str = default_of("beam_model")  # a BDL file; "": OpenTPS's own (worker.engines.proton_dose)
    ct_calibration: str = default_of("ct_calibration")  # a CT calibration folder; "": OpenTPS's own
    # Plan jobs hand their beamlets to every worker as sub-jobs of at most this many spots
    # (worker.engines.beamlet_fanout).
    distributed_beamlets: bool = default_of("distributed_beamlets")
    beamlet_split_spots: int = default_of("beamlet_split_spots")
    dose_job_timeout_seconds: int = default_of("dose_job_timeout_seconds")
    viewer_url: str = ""  # OHIF, for links from Orthanc Explorer ("" : no link)
    # A killed worker's job is taken up about this + 60 s later.
    worker_heartbeat_seconds: int = default_of("worker_heartbeat_seconds")
    worker_maintenance_seconds: int = default_of("worker_maintenance_seconds")  # how often workers look for lost jobs
    auto_dose: AutoDose = field(default_factory=AutoDose)
    auto_analysis: AutoAnalysis = field(default_factory=AutoAnalysis)
    # OrthancRT.AutoPlanning as configured; orthanc_rt.planning.auto_rules.AutoPlanning.from_config reads it.
    auto_planning: Mapping[str, Any] = field(default_factory=dict)
    # OrthancRT.DoseCheck as configured; orthanc_rt.scheduling.params.CheckConfig.from_settings reads it.
    dose_check: Mapping[str, Any] = field(default_factory=dict)
    # OrthancRT.AutoComputeFrom as configured; orthanc_rt.scheduling.params.AutoComputeFrom reads it.
    auto_compute_from: Mapping[str, Any] = field(default_factory=dict)
    # OrthancRT.Robustness as configured (Protocols: name -> goals); orthanc_rt.scheduling.robustness reads it.
    robustness: Mapping[str, Any] = field(default_factory=dict)
    # OrthancRT.AutoRobustness as configured (a robustness evaluation of arriving RT Ion Plans);
    # orthanc_rt.scheduling.robustness.AutoRobustness reads it.
    auto_robustness: Mapping[str, Any] = field(default_factory=dict)
    plan_job_timeout_seconds: int = default_of("plan_job_timeout_seconds")  # beamlets + optimisation + final dose
    # OrthancRT.Metrics.RequireRole: GET /rt/metrics needs the `read` permission; false: any user Orthanc let in
    # (a Prometheus scraper with an Orthanc login and no Orthanc-RT role), or anyone when authentication is off.
    metrics_require_role: bool = True

    def __post_init__(self) -> None:
        # Always this process's data folder, also for settings made from a partial mapping (the plugin's
        # configuration, tests): that is where the launcher put the files.
        data = default_data_dir()
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data / 'orthanc-rt.sqlite'}")
        if not self.work_dir:
            object.__setattr__(self, "work_dir", str(data / "jobs"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env

        def get(key: str) -> Any:
            return from_environment(key, env)

        auto = AutoDose(
            enabled=get("auto_dose"),
            primaries=get("auto_dose_primaries"),
            scoring_spacing_mm=get("auto_dose_scoring_spacing_mm"),
            wait_for_ct_seconds=get("wait_for_ct_seconds"),
        )
        return cls(
            database_url=get("database_url"),
            redis_url=get("redis_url"),
            orthanc_url=get("orthanc_url") or cls.orthanc_url,
            orthanc_username=get("orthanc_username"),
            orthanc_password=get("orthanc_password"),
            work_dir=get("work_dir"),
            mcsquare_threads=get("mcsquare_threads"),
            beam_model=get("beam_model"),
            ct_calibration=get("ct_calibration"),
            distributed_beamlets=get("distributed_beamlets"),
            beamlet_split_spots=get("beamlet_split_spots"),
            dose_job_timeout_seconds=get("dose_job_timeout_seconds"),
            plan_job_timeout_seconds=get("plan_job_timeout_seconds"),
            worker_heartbeat_seconds=get("worker_heartbeat_seconds"),
            worker_maintenance_seconds=get("worker_maintenance_seconds"),
            auto_dose=auto,
            auto_analysis=AutoAnalysis(enabled=get("auto_analysis")),
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
            let=auto_cfg.get("Let", False), rbe_model=auto_cfg.get("RbeModel"),
            alpha_beta_gy=auto_cfg.get("AlphaBetaGy"),
            alpha_beta_by_roi=tuple(dict(auto_cfg.get("AlphaBetaByRoi") or {}).items()),
        )
        return replace(
            base,
            # Orthanc itself, as a worker on this host reaches it (the plugin calls it in-process).
            orthanc_url=local_orthanc_url(int(config.get("HttpPort", default_of("http_port"))),
                                          ssl=_as_bool(config.get("SslEnabled", False))),
            database_url=section.get("DatabaseUrl", base.database_url),
            redis_url=section.get("RedisUrl", base.redis_url),
            work_dir=section.get("WorkDir", base.work_dir),
            dose_job_timeout_seconds=int(section.get("DoseJobTimeoutSeconds", base.dose_job_timeout_seconds)),
            plan_job_timeout_seconds=int(section.get("PlanJobTimeoutSeconds", base.plan_job_timeout_seconds)),
            viewer_url=str(section.get("ViewerUrl", "")),
            auto_dose=auto,
            auto_analysis=_auto_analysis(dict(section.get("AutoAnalysis", {}))),
            auto_planning=dict(section.get("AutoPlanning", {})),
            dose_check=dict(section.get("DoseCheck", {})),
            auto_compute_from=dict(section.get("AutoComputeFrom", {})),
            robustness=dict(section.get("Robustness", {})),
            auto_robustness=dict(section.get("AutoRobustness", {})),
            metrics_require_role=_as_bool(dict(section.get("Metrics", {})).get("RequireRole", True)),
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as shown in logs, no credentials; /rt/health adds the planning rules
        (`orthanc_rt.planning.auto_rules.shown_settings`)."""
        return {
            "database": _redact_url(self.database_url),
            "redis": _redact_url(self.redis_url),
            "orthanc_url": _redact_url(self.orthanc_url),
            "mcsquare_threads": self.mcsquare_threads,
            "beam_model": self.beam_model or "OpenTPS default",
            "ct_calibration": self.ct_calibration or "OpenTPS default",
            "distributed_beamlets": self.distributed_beamlets,
            "beamlet_split_spots": self.beamlet_split_spots,
            "dose_job_timeout_seconds": self.dose_job_timeout_seconds,
            "auto_dose": {
                "enabled": self.auto_dose.enabled,
                "primaries": self.auto_dose.primaries,
                "scoring_spacing_mm": self.auto_dose.scoring_spacing_mm,
                "wait_for_ct_seconds": self.auto_dose.wait_for_ct_seconds,
                "let": self.auto_dose.let,
                "rbe_model": self.auto_dose.rbe_model,
            },
            "auto_analysis": {name: getattr(self.auto_analysis, name)
                              for name in AutoAnalysis.__dataclass_fields__},
            "plan_job_timeout_seconds": self.plan_job_timeout_seconds,
        }

    def for_workers(self) -> dict[str, Any]:
        """What a worker runs with, as it publishes it for /rt/health (no credentials)."""
        shown = self.redacted()
        return {"orthanc_url": shown["orthanc_url"], "database": shown["database"], "work_dir": self.work_dir,
                **{key: shown[key] for key in WORKER_ONLY}}


def _auto_analysis(cfg: Mapping[str, Any]) -> AutoAnalysis:
    d = AutoAnalysis()
    floats = lambda key, default: tuple(float(v) for v in cfg.get(key, default))  # noqa: E731
    return AutoAnalysis(enabled=bool(cfg.get("Enabled", d.enabled)),
                        d_at_volume_pct=floats("DoseAtVolumePct", d.d_at_volume_pct),
                        v_at_dose_gy=floats("VolumeAtDoseGy", d.v_at_dose_gy),
                        v_at_dose_pct=floats("VolumeAtDosePct", d.v_at_dose_pct),
                        reference_dose_gy=_as_optional_float(cfg.get("ReferenceDoseGy")),
                        import_sr=bool(cfg.get("ImportSr", d.import_sr)))


def redact_url(url: str) -> str:
    """`url` without the user:password part (for logs, errors and /rt/health)."""
    return _redact_url(url)


def _redact_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"

"""Error-scenario doses of a plan (robustness evaluation), one MCsquare run per scenario, spread over the workers.

`scenario_dose` is one scenario: MCsquare on the plan with every beam's
isocentre moved by the scenario's shift (the dose moves with the beams
relative to the patient) and every density of the CT calibration divided by
1 + range error (stopping powers per length scale with density, so ranges
scale by 1 + range error). MCsquare transports the protons; nothing of the
dose is shifted or stretched afterwards.

`ScenarioDoses` fans the scenarios out exactly as plans fan out their
beamlets (worker.engines.beamlet_fanout.Fanout): each scenario is an RQ job on
the "scenarios" queue (`worker.tasks.run_scenario`) that any worker on any
host may take; the CT travels once through Redis (compressed), the plan and
the scenario in the job's arguments (plain data), each dose back through Redis.
The parent job computes the scenarios no worker has taken yet, so a lone
worker computes them all; a part that fails is retried, and one that finally
fails fails the evaluation with its reason (never a partial result presented
as complete). A lost worker costs one scenario's Monte Carlo run.
"""
from __future__ import annotations

import io
import json
import logging
import time
import uuid
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from orthanc_rt.dicom.models import CtVolume, DoseGrid, IonPlan
from orthanc_rt.scheduling.queue import QUEUE_NAMES, RUN_SCENARIO, redis_for
from orthanc_rt.scheduling.robustness import Scenario
from worker.engines.beamlet_fanout import PART_RETRIES, Fanout, FanoutReport, serve_part
from worker.engines.mcsquare import ProgressCallback
from worker.engines.proton_dose import compute_dose

logger = logging.getLogger(__name__)

QUEUE = QUEUE_NAMES["scenarios"]
NAME = "scenarios"


@dataclass(frozen=True)
class ScenarioPart:
    """One scenario as a fan-out part (what Fanout needs of a part)."""

    index: int
    scenario_name: str
    spots: int = 1  # every scenario weighs the same in the progress

    def label(self, count: int) -> str:
        return f"scenario {self.index + 1}/{count} ({self.scenario_name})"


def shifted_plan(plan: IonPlan, shift_mm: tuple[float, float, float]) -> IonPlan:
    """The plan with every beam's isocentre moved by `shift_mm` (patient coordinates)."""
    return replace(plan, beams=[replace(beam, isocenter_mm=tuple(float(c + d) for c, d in
                                                                 zip(beam.isocenter_mm, shift_mm)))
                                for beam in plan.beams])


def density_scale(range_pct: float) -> float:
    """The density factor that makes every range `range_pct` % longer (range is inversely proportional)."""
    return 1.0 / (1.0 + range_pct / 100.0)


def scenario_dose(ct: CtVolume, plan: IonPlan, scenario: Scenario, *, primaries: int, work_dir: Path,
                  scoring_spacing_mm: float | None = None, threads: int = 0,
                  on_progress: ProgressCallback | None = None) -> DoseGrid:
    """The whole-plan dose of `plan` on `ct` in `scenario` (module docstring), by MCsquare."""
    return compute_dose(ct, shifted_plan(plan, scenario.shift_mm), primaries=primaries, work_dir=work_dir,
                        scoring_spacing_mm=scoring_spacing_mm, threads=threads, on_progress=on_progress,
                        density_scale=density_scale(scenario.range_pct))


class ScenarioDoses:
    """Every scenario's dose, computed by whichever workers are free (module docstring)."""

    def __init__(self, redis_url: str, *, part_timeout_s: int, retries: int = PART_RETRIES):
        self.redis = redis_for(redis_url)
        self.part_timeout_s = int(part_timeout_s)
        self.retries = int(retries)
        self.last_report: FanoutReport | None = None

    def __call__(self, ct: CtVolume, plan: IonPlan, scenarios: list[Scenario], *, primaries: int, work_dir: Path,
                 scoring_spacing_mm: float | None = None, threads: int = 0,
                 on_progress: ProgressCallback | None = None) -> list[DoseGrid]:
        started = time.monotonic()
        parts = [ScenarioPart(k, scenario.name) for k, scenario in enumerate(scenarios)]
        self.last_report = FanoutReport(parts=parts)  # type: ignore[arg-type]
        fanout = Fanout(self.redis, uuid.uuid4().hex, parts, ttl_s=self.part_timeout_s * (self.retries + 2),
                        work=_scenario_work, name=NAME, queue=QUEUE, entry=RUN_SCENARIO)
        context = pack_ct(ct, primaries, scoring_spacing_mm)
        self.last_report.context_bytes = len(context)
        payloads = [(plan, scenario) for scenario in scenarios]
        try:
            fanout.publish(context)
            fanout.enqueue(payloads, timeout_s=self.part_timeout_s, retries=self.retries)
            blobs = fanout.collect(payloads, threads=threads, work_dir=Path(work_dir), on_progress=on_progress,
                                   report=self.last_report)
        finally:
            fanout.close(self.last_report)
        self.last_report.seconds = time.monotonic() - started
        logger.info("%d scenario doses (%d by the parent job) in %.1f s", len(scenarios),
                    len(self.last_report.stolen), self.last_report.seconds)
        return [unpack_dose(blob, ct.frame_of_reference_uid) for blob in blobs]


def compute_scenario(fanout_id: str, index: int, payload: tuple[IonPlan, Scenario]) -> dict[str, Any]:
    """One scenario, in any worker (RQ job `worker.tasks.run_scenario`)."""
    return serve_part(fanout_id, index, payload, name=NAME, parent="robustness", work=_scenario_work)


def _scenario_work(blob: bytes, index: int, payload: tuple[IonPlan, Scenario], *, threads: int, work_dir: Path,
                   on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
    plan, scenario = payload
    ct, primaries, spacing = unpack_ct(blob)
    dose = scenario_dose(ct, plan, scenario, primaries=primaries, work_dir=work_dir, scoring_spacing_mm=spacing,
                         threads=threads, on_progress=on_progress)
    return pack_dose(dose), {"scenario": scenario.name, "dose_max_gy": round(float(dose.dose_gy.max()), 4)}


def pack_ct(ct: CtVolume, primaries: int, scoring_spacing_mm: float | None) -> bytes:
    hu = np.asarray(ct.hu)
    whole = bool(np.all(hu == np.round(hu)) and hu.min() >= -32768 and hu.max() <= 32767)
    meta = {"origin": list(ct.origin_mm), "spacing": list(ct.spacing_mm), "frame": ct.frame_of_reference_uid,
            "series": ct.series_instance_uid, "primaries": int(primaries), "scoring_spacing_mm": scoring_spacing_mm}
    buffer = io.BytesIO()
    np.savez(buffer, hu=hu.astype(np.int16 if whole else np.float32),
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return zlib.compress(buffer.getvalue(), 1)


def unpack_ct(blob: bytes) -> tuple[CtVolume, int, float | None]:
    with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as data:
        hu = data["hu"]
        meta = json.loads(data["meta"].tobytes())
    ct = CtVolume(hu=hu, origin_mm=tuple(meta["origin"]), spacing_mm=tuple(meta["spacing"]),
                  frame_of_reference_uid=meta["frame"], series_instance_uid=meta["series"])
    return ct, int(meta["primaries"]), meta["scoring_spacing_mm"]


def pack_dose(dose: DoseGrid) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, dose=np.asarray(dose.dose_gy, dtype=np.float32), origin=np.array(dose.origin_mm),
             spacing=np.array(dose.spacing_mm))
    return zlib.compress(buffer.getvalue(), 1)


def unpack_dose(blob: bytes, frame_of_reference_uid: str) -> DoseGrid:
    with np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False) as data:
        return DoseGrid(dose_gy=data["dose"], origin_mm=tuple(float(v) for v in data["origin"]),
                        spacing_mm=tuple(float(v) for v in data["spacing"]),
                        frame_of_reference_uid=frame_of_reference_uid)

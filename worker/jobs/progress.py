"""Progress of a running job, written to its database row at a bounded rate."""
from __future__ import annotations

import time
from typing import Mapping

from orthanc_rt.records.jobs import JobStore

# Overall fraction each stage of a dose job starts at; Monte Carlo dominates the run time.
STAGES = {
    "fetching inputs": 0.0,
    "preparing MCsquare": 0.08,
    "Monte Carlo": 0.10,
    "exporting RTDOSE": 0.92,
    "storing": 0.96,
}
_MIN_INTERVAL_S = 2.0


class Progress:
    def __init__(self, store: JobStore, job_id: str, stages: Mapping[str, float] = STAGES):
        self.store = store
        self.job_id = job_id
        self.stages = dict(stages)
        self.started = time.monotonic()
        self._last_write = 0.0
        self.stage = ""

    def enter(self, stage: str) -> None:
        self.stage = stage
        self._write(self.stages[stage], force=True)

    def within(self, fraction_of_stage: float, detail: str = "") -> None:
        """Progress inside the current stage (0..1), e.g. MCsquare's own counter."""
        names = list(self.stages)
        start = self.stages[self.stage]
        end = self.stages[names[names.index(self.stage) + 1]] if names.index(self.stage) + 1 < len(names) else 1.0
        self._write(start + (end - start) * max(0.0, min(1.0, fraction_of_stage)), detail=detail)

    def _write(self, overall: float, *, force: bool = False, detail: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last_write < _MIN_INTERVAL_S:
            return
        self._last_write = now
        elapsed = now - self.started
        eta = elapsed * (1 - overall) / overall if overall > 0.05 else None
        stage = f"{self.stage}: {detail}" if detail else self.stage
        self.store.progress(self.job_id, stage=stage[:64], fraction=overall, eta_seconds=eta)

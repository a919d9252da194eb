"""Progress of a running job, written to its database row at a bounded rate."""
from __future__ import annotations

import time
from typing import Callable, Mapping

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
    def __init__(self, store: JobStore, job_id: str, stages: Mapping[str, float] = STAGES,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.job_id = job_id
        self.stages = dict(stages)
        self.clock = clock
        self.started = clock()
        self._last_write = 0.0
        self.stage = ""
        self._stage_started = self.started

    def enter(self, stage: str) -> None:
        self.stage = stage
        self._stage_started = self.clock()
        self._write(self.stages[stage], 0.0, force=True)

    def within(self, fraction_of_stage: float, detail: str = "") -> None:
        """Progress inside the current stage (0..1), e.g. MCsquare's own counter.

        Call it again without news (the same fraction) to keep the ETA current: it grows while a stage stalls.
        """
        self._write(self.stages[self.stage], max(0.0, min(1.0, fraction_of_stage)), detail=detail)

    def _end_of_stage(self) -> float:
        names = list(self.stages)
        following = names.index(self.stage) + 1
        return self.stages[names[following]] if following < len(names) else 1.0

    def _write(self, start: float, fraction: float, *, force: bool = False, detail: str = "") -> None:
        now = self.clock()
        if not force and now - self._last_write < _MIN_INTERVAL_S:
            return
        self._last_write = now
        end = self._end_of_stage()
        overall = start + (end - start) * fraction
        elapsed = now - self.started
        # The current stage at its own rate (a stage's share of the whole is only a guess: a 7,000-spot plan spends
        # far longer in the optimiser than a phantom), the stages after it at the rate of the run so far.
        in_stage = now - self._stage_started
        if fraction >= 0.02 and in_stage > 0:
            stage_left = in_stage * (1 - fraction) / fraction
            eta = stage_left + (1 - end) * (elapsed + stage_left) / end if end > 0 else None
        else:
            eta = elapsed * (1 - overall) / overall if overall > 0.05 else None
        stage = f"{self.stage}: {detail}" if detail else self.stage
        self.store.progress(self.job_id, stage=stage[:64], fraction=overall, eta_seconds=eta)

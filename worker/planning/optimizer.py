"""Our IMPT spot-weight optimiser: the request's dose objectives over a beamlet matrix, plain numpy/scipy.

Why not OpenTPS' `IntensityModulationOptimizer`: per L-BFGS-B iteration it evaluates the objective and its
gradient separately (two mat-vecs where one suffices), and every gradient builds a scaled copy of the whole beamlet
matrix (weights squared: `B @ diag(x)`), transposes it and slices its columns per objective (a sparse copy each);
that bookkeeping, not the arithmetic, is most of its time (docs/planning.md#the-optimiser, profiled). Here:

- the matrix is cropped once to the rows (voxels) of the ROIs that carry an objective, float32 CSR;
- the weights are the plan's MU x fractions directly, kept >= 0 by L-BFGS-B's bounds (OpenTPS squares them to
  the same end, which makes the problem non-convex and its gradient vanish at zero weights);
- one evaluation is one mat-vec (the dose) and one transposed mat-vec (all objectives' voxel derivatives summed
  first), with the value and gradient returned together to scipy.

The objectives mean what OpenTPS' `DoseFidelity` makes of `FidObjective` metrics (so a request plans the same with
either optimiser), each the mean over the ROI's voxels of a squared deviation, times its weight, summed:

- DMin: dose below the limit; DMax: dose above it; DUniform: any deviation;
- DMean: (mean dose - limit)^2 when the mean is above the limit (a mean-dose ceiling, as in OpenTPS);
- DVHMax (limit L, volume v): the voxels dosed between L and D_v (the dose the hottest fraction v of the ROI
  exceeds) pay their excess over L: pushing them below L satisfies "at most v above L" with the least change;
- DVHMin: the voxels dosed between D_v and L pay their shortfall ("at least v at L or above").
D_v is read as OpenTPS reads it (the sorted doses at index floor((1 - v) n)); DVH terms are piecewise smooth (their
voxel set changes with the dose), as in every gradient planning system that uses them.

Robust plans: objectives flagged robust count in their worst error scenario (minimax over the nominal and the
scenario beamlets, as OpenTPS' worst-case optimisation), the others on the nominal dose.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.request import OBJECTIVE_TYPES

OPTIMIZER_NAME = "orthanc-rt"
# L-BFGS-B stops when an iteration lowers the objective by less than ftol x max(objective, 1) (scipy's `ftol`).
# Measured on the pelvis phantom (docs/planning.md#the-optimiser): converged at 603 iterations, the plan's D95/D2
# 0.05 Gy from where 300 iterations left them.
DEFAULT_FTOL = 1e-5
DEFAULT_GTOL = 1e-6
# Correction pairs kept by L-BFGS-B (scipy's default: 10): 20 x spots doubles, small next to the matrix; not tuned.
DEFAULT_MAXCOR = 20


@dataclass(frozen=True)
class DoseObjective:
    """One objective on the rows `voxels` (indices into the beamlet matrix's rows)."""
    type: str  # one of OBJECTIVE_TYPES
    voxels: np.ndarray
    dose_gy: float
    weight: float
    volume_pct: float | None = None
    robust: bool = False  # counted in the worst error scenario (ObjectiveFunction's `scenarios`)
    roi: str = ""  # named in refusals

    def __post_init__(self):
        if self.type not in OBJECTIVE_TYPES:
            raise PlanRequestError(f"objective type {self.type!r} is not one of {', '.join(OBJECTIVE_TYPES)}")
        if len(self.voxels) == 0:
            raise PlanRequestError(f"ROI {self.roi!r} of a {self.type} objective has no voxel on the optimisation "
                                   "grid (smaller than its voxels?): use a finer optimization_grid_mm")
        if self.type.startswith("DVH") and (self.volume_pct is None or not 0.0 < self.volume_pct < 100.0):
            raise PlanRequestError(f"a {self.type} objective needs volume_pct between 0 and 100, "
                                   f"not {self.volume_pct!r}")


@dataclass
class OptimizationResult:
    weights: np.ndarray  # MU x fractions per spot (>= 0)
    iterations: int
    evaluations: int
    history: list[float] = field(default_factory=list)  # objective at the start and after each iteration
    converged: bool = False
    message: str = ""
    seconds: float = 0.0


class _Rows:
    """A beamlet matrix cropped to `rows` (float32 CSR, and its transpose) and the objectives on it."""

    def __init__(self, matrix: sp.spmatrix, objectives: Sequence[DoseObjective]):
        rows = np.unique(np.concatenate([np.asarray(o.voxels, dtype=np.int64) for o in objectives]))
        if rows[0] < 0 or rows[-1] >= matrix.shape[0]:
            raise PlanRequestError(f"objective voxels outside the beamlet matrix's {matrix.shape[0]} rows")
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)[rows]
        self.matrix_t = self.matrix.T.tocsr()  # A^T as CSR: the gradient's mat-vec streams rows too
        # Each objective's voxels as positions in the cropped rows.
        self.terms = [(o, np.searchsorted(rows, np.asarray(o.voxels, dtype=np.int64))) for o in objectives]

    def dose(self, weights32: np.ndarray) -> np.ndarray:
        return self.matrix @ weights32

    def evaluate(self, dose: np.ndarray, terms) -> tuple[float, np.ndarray]:
        """The weighted sum of `terms` on `dose` and its derivative by the dose of each cropped row."""
        total = 0.0
        voxel_gradient = np.zeros(dose.shape[0], dtype=np.float32)
        for objective, at in terms:
            value, derivative = _term(objective, dose[at].astype(np.float64))
            total += objective.weight * value
            if derivative is not None:  # one objective's voxels are distinct: fancy += adds each once
                voxel_gradient[at] += (objective.weight * derivative).astype(np.float32)
        return total, voxel_gradient


class ObjectiveFunction:
    """F(w) of the dose `matrix @ w`, with its gradient: value and gradient in one pass over the matrix.

    Without robust objectives F is the sum of weight x objective term. With `scenarios` (beamlet matrices of the
    error scenarios, rows as `matrix`), the robust objectives count in their worst case, as OpenTPS' DoseFidelity
    counts them: F = non-robust terms on the nominal dose + the largest, over the nominal and every scenario dose,
    of the robust terms' sum; the gradient is that worst scenario's (a subgradient where two tie).
    The matrices are cropped to the objectives' rows at construction; `dose(w)` is the nominal one on those rows.
    """

    def __init__(self, matrix: sp.spmatrix, objectives: Sequence[DoseObjective],
                 scenarios: Sequence[sp.spmatrix] = ()):
        if not objectives:
            raise PlanRequestError("the optimiser needs at least one objective")
        self.spots = matrix.shape[1]
        self._nominal = _Rows(matrix, objectives)
        self._plain = [(o, at) for o, at in self._nominal.terms if not o.robust]
        self._robust = [(o, at) for o, at in self._nominal.terms if o.robust]
        robust = [o for o in objectives if o.robust]
        self._scenarios = [_Rows(scenario, robust) for scenario in scenarios] if robust else []
        self.evaluations = 0

    @property
    def matrix(self) -> sp.csr_matrix:
        return self._nominal.matrix

    def dose(self, weights: np.ndarray) -> np.ndarray:
        return self._nominal.dose(np.asarray(weights, dtype=np.float32))

    def value(self, weights: np.ndarray) -> float:
        return self.value_and_gradient(weights)[0]

    def value_and_gradient(self, weights: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        w32 = np.asarray(weights, dtype=np.float32)
        dose = self._nominal.dose(w32)
        plain, voxel_gradient = self._nominal.evaluate(dose, self._plain)
        worst, worst_gradient = self._nominal.evaluate(dose, self._robust)
        worst_scenario = None
        for scenario in self._scenarios:
            value, gradient = scenario.evaluate(scenario.dose(w32), scenario.terms)
            if value > worst:
                worst, worst_gradient, worst_scenario = value, gradient, scenario
        if worst_scenario is None:
            voxel_gradient += worst_gradient
        gradient = self._nominal.matrix_t @ voxel_gradient
        if worst_scenario is not None:
            gradient = gradient + worst_scenario.matrix_t @ worst_gradient
        return float(plain + worst), np.asarray(gradient, dtype=np.float64)


def _term(objective: DoseObjective, dose: np.ndarray) -> tuple[float, np.ndarray | None]:
    """The objective's value on its voxels' `dose` and d value / d dose (None when it is zero everywhere)."""
    n = dose.shape[0]
    limit = objective.dose_gy
    kind = objective.type
    if kind == "DMean":
        excess = max(0.0, float(dose.mean()) - limit)
        return excess ** 2, (np.full(n, 2.0 * excess / n) if excess > 0 else None)
    if kind == "DUniform":
        deviation = dose - limit
    elif kind == "DMax":
        deviation = np.maximum(dose - limit, 0.0)
    elif kind == "DMin":
        deviation = np.minimum(dose - limit, 0.0)
    else:  # DVHMax / DVHMin: only the voxels between the limit and D_v count
        fraction = objective.volume_pct / 100.0
        index = min(int((1.0 - fraction) * n), n - 1)
        dose_at_volume = float(np.partition(dose, index)[index])
        if kind == "DVHMax":
            deviation = np.where((dose >= limit) & (dose <= dose_at_volume), dose - limit, 0.0)
        else:
            deviation = np.where((dose <= limit) & (dose >= dose_at_volume), dose - limit, 0.0)
    value = float(np.dot(deviation, deviation)) / n
    return value, 2.0 * deviation / n


def initial_weights(function: ObjectiveFunction, prescription_gy: float) -> np.ndarray:
    """Equal weights scaled so the hottest voxel of the objectives' ROIs gets the prescription (as OpenTPS starts)."""
    ones = np.ones(function.spots)
    peak = float(np.max(function.dose(ones)))
    if not peak > 0:
        raise PlanRequestError("the beamlets deposit no dose in the objectives' ROIs: no spot reaches them")
    return ones * (prescription_gy / peak)


def optimize_weights(function: ObjectiveFunction, initial: np.ndarray, *, max_iterations: int,
                     ftol: float = DEFAULT_FTOL, gtol: float = DEFAULT_GTOL, maxcor: int = DEFAULT_MAXCOR,
                     on_iteration: Callable[[int], None] | None = None) -> OptimizationResult:
    """L-BFGS-B on `function` from `initial`, weights >= 0; `on_iteration(iterations done)` after each."""
    started = time.monotonic()
    history = [function.value(initial)]

    def callback(intermediate_result):  # scipy passes the iterate's OptimizeResult to a parameter of this name
        history.append(float(intermediate_result.fun))
        if on_iteration is not None:
            on_iteration(len(history) - 1)

    result = scipy.optimize.minimize(function.value_and_gradient, np.asarray(initial, dtype=np.float64), jac=True,
                                     method="L-BFGS-B", bounds=[(0.0, None)] * function.spots, callback=callback,
                                     options={"maxiter": int(max_iterations), "ftol": ftol, "gtol": gtol,
                                              "maxcor": maxcor})
    weights = np.maximum(np.asarray(result.x, dtype=np.float64), 0.0)
    return OptimizationResult(weights=weights, iterations=int(result.nit), evaluations=function.evaluations,
                              history=history, converged=bool(result.success) and result.nit < max_iterations,
                              message=str(result.message), seconds=time.monotonic() - started)

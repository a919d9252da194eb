"""Our IMPT optimiser (worker.planning.optimizer): analytic gradients against finite differences, known optima."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from orthanc_rt.errors import PlanRequestError
from worker.engines.mcsquare import ScoringGrid
from worker.planning.impt import _beamlet_dose, _beamlet_rows
from worker.planning.optimizer import (
    DoseObjective,
    ObjectiveFunction,
    initial_weights,
    optimize_weights,
)


def _random_problem(seed: int, voxels: int = 60, spots: int = 12):
    rng = np.random.default_rng(seed)
    dense = rng.random((voxels, spots)) * (rng.random((voxels, spots)) < 0.5)
    weights = rng.random(spots) * 2.0 + 0.5
    return sp.csc_matrix(dense), weights, rng


def _central_differences(function: ObjectiveFunction, weights: np.ndarray, step: float = 1e-4) -> np.ndarray:
    out = np.empty_like(weights)
    for k in range(weights.size):
        up, down = weights.copy(), weights.copy()
        up[k] += step
        down[k] -= step
        out[k] = (function.value(up) - function.value(down)) / (2 * step)
    return out


@pytest.mark.parametrize("kind,volume_pct", [("DMin", None), ("DMax", None), ("DMean", None), ("DUniform", None),
                                             ("DVHMin", 40.0), ("DVHMax", 30.0)])
def test_gradient_matches_finite_differences(kind, volume_pct):
    matrix, weights, rng = _random_problem(seed=len(kind) + int(volume_pct or 0))
    dose = matrix @ weights
    voxels = np.sort(rng.choice(matrix.shape[0], 40, replace=False))
    # A limit inside the ROI's dose range where the term is active: DVHMin's above D40 (the 60th percentile),
    # DVHMax's below D30 (the 70th), DMean's below the mean.
    limit = float(np.percentile(dose[voxels], 80 if kind == "DVHMin" else 50))
    if kind == "DMean":
        limit = float(dose[voxels].mean() * 0.8)
    function = ObjectiveFunction(matrix, [DoseObjective(kind, voxels, limit, 2.5, volume_pct)])
    value, gradient = function.value_and_gradient(weights)
    assert value > 0
    numeric = _central_differences(function, weights)
    # float32 mat-vecs: a relative tolerance of a few 1e-3 of the gradient's scale.
    assert np.allclose(gradient, numeric, rtol=5e-3, atol=5e-3 * np.abs(numeric).max())
    assert np.abs(gradient).max() > 0


def test_sum_of_objectives_on_overlapping_rois_has_the_sum_of_gradients():
    matrix, weights, rng = _random_problem(seed=7)
    a = np.arange(0, 40)
    b = np.arange(20, 60)
    both = ObjectiveFunction(matrix, [DoseObjective("DUniform", a, 3.0, 1.0), DoseObjective("DMax", b, 2.0, 4.0)])
    one = ObjectiveFunction(matrix, [DoseObjective("DUniform", a, 3.0, 1.0)])
    two = ObjectiveFunction(matrix, [DoseObjective("DMax", b, 2.0, 4.0)])
    value, gradient = both.value_and_gradient(weights)
    assert value == pytest.approx(one.value(weights) + two.value(weights), rel=1e-6)
    assert np.allclose(gradient, one.value_and_gradient(weights)[1] + two.value_and_gradient(weights)[1], rtol=1e-5)


def test_reaches_the_exact_solution_of_a_consistent_uniform_dose_problem():
    # Two spots, three voxels: the dose [2, 2, 2] Gy is reached exactly by weights [1, 1] (the optimum, F = 0).
    matrix = sp.csr_matrix(np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0]]))
    function = ObjectiveFunction(matrix, [DoseObjective("DUniform", np.arange(3), 2.0, 1.0)])
    result = optimize_weights(function, np.array([0.2, 3.0]), max_iterations=200, ftol=1e-14, gtol=1e-10)
    assert np.allclose(result.weights, [1.0, 1.0], atol=1e-4)
    assert result.history[-1] < 1e-8 < result.history[0]


def test_bounds_keep_weights_non_negative_at_the_constrained_optimum():
    # Voxel 0 wants 1 Gy (weight 1 on spot 0), an OAR voxel wants 0 from spot 1 which only adds dose there:
    # the unconstrained least-squares optimum would give spot 1 a negative weight; the bound holds it at 0.
    matrix = sp.csr_matrix(np.array([[1.0, 0.5], [0.0, 1.0]]))
    objectives = [DoseObjective("DUniform", np.array([0]), 1.0, 1.0), DoseObjective("DMax", np.array([1]), 0.0, 1.0)]
    function = ObjectiveFunction(matrix, objectives)
    result = optimize_weights(function, np.array([0.5, 0.5]), max_iterations=200, ftol=1e-14, gtol=1e-10)
    assert result.weights.min() >= 0.0
    assert np.allclose(result.weights, [1.0, 0.0], atol=1e-5)


def test_iteration_callback_counts_iterations():
    matrix, weights, _ = _random_problem(seed=3)
    function = ObjectiveFunction(matrix, [DoseObjective("DUniform", np.arange(60), 5.0, 1.0)])
    seen = []
    result = optimize_weights(function, initial_weights(function, 5.0), max_iterations=15, on_iteration=seen.append)
    assert seen == list(range(1, result.iterations + 1))
    assert len(result.history) == result.iterations + 1
    assert result.history[-1] < result.history[0]


def test_initial_weights_put_the_prescription_at_the_hottest_voxel():
    matrix, _, _ = _random_problem(seed=5)
    function = ObjectiveFunction(matrix, [DoseObjective("DUniform", np.arange(60), 7.0, 1.0)])
    assert float(np.max(function.dose(initial_weights(function, 7.0)))) == pytest.approx(7.0, rel=1e-5)


def test_bad_objectives_are_refused_with_the_reason():
    matrix, _, _ = _random_problem(seed=1)
    with pytest.raises(PlanRequestError, match="ROI 'Lens' of a DMax objective has no voxel.*finer"):
        DoseObjective("DMax", np.array([], dtype=int), 1.0, 1.0, roi="Lens")
    with pytest.raises(PlanRequestError, match="volume_pct"):
        DoseObjective("DVHMax", np.arange(3), 1.0, 1.0)
    with pytest.raises(PlanRequestError, match="not one of"):
        DoseObjective("EUD", np.arange(3), 1.0, 1.0)
    with pytest.raises(PlanRequestError, match="outside"):
        ObjectiveFunction(matrix, [DoseObjective("DMax", np.array([0, 999]), 1.0, 1.0)])
    with pytest.raises(PlanRequestError, match="no dose"):
        initial_weights(ObjectiveFunction(sp.csr_matrix((4, 2)), [DoseObjective("DMax", np.arange(4), 1.0, 1.0)]),
                        2.0)


def test_robust_objectives_count_in_their_worst_scenario():
    matrix, weights, rng = _random_problem(seed=11)
    hot = sp.csc_matrix(matrix.toarray() * 1.3)  # a scenario that overdoses everything: the worst for a DMax
    cold = sp.csc_matrix(matrix.toarray() * 0.8)
    target = np.arange(0, 30)
    limit = float(np.median((matrix @ weights)[target]))
    robust = DoseObjective("DMax", target, limit, 2.0, robust=True)
    plain = DoseObjective("DUniform", np.arange(30, 60), 1.0, 1.0)
    function = ObjectiveFunction(matrix, [robust, plain], scenarios=[cold, hot])
    value, gradient = function.value_and_gradient(weights)
    # F = the plain term on the nominal dose + the robust term on the hot scenario's dose (its worst).
    expected = ObjectiveFunction(matrix, [plain]).value(weights) + ObjectiveFunction(hot, [robust]).value(weights)
    assert value == pytest.approx(expected, rel=1e-6)
    assert value > ObjectiveFunction(matrix, [robust, plain]).value(weights)
    numeric = _central_differences(function, weights)
    assert np.allclose(gradient, numeric, rtol=5e-3, atol=5e-3 * np.abs(numeric).max())


def test_without_robust_objectives_the_scenarios_do_not_count():
    matrix, weights, _ = _random_problem(seed=12)
    objectives = [DoseObjective("DMax", np.arange(60), 1.0, 1.0)]
    hot = sp.csc_matrix(matrix.toarray() * 2.0)
    assert ObjectiveFunction(matrix, objectives, scenarios=[hot]).value(weights) == pytest.approx(
        ObjectiveFunction(matrix, objectives).value(weights))


def test_roi_rows_follow_the_beamlet_matrix_voxel_order():
    # The rows our optimiser reads an ROI from are the voxels `_beamlet_dose` puts back on the [z, y, x] grid.
    grid = ScoringGrid(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(3.0, 3.0, 3.0), size_xyz=(5, 4, 3))
    mask = np.random.default_rng(2).random((3, 4, 5)) < 0.3  # [z, y, x]
    rows = _beamlet_rows(mask)
    identity = sp.identity(rows.size, format="csr")
    assert np.array_equal(_beamlet_dose(identity, rows.astype(np.float64), grid) > 0.5, mask)

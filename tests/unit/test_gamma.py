"""gamma_3d on cases whose result is known by construction (pymedphys comparisons: tests/integration)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from orthanc_rt.analysis.gamma import GammaCriteria, GammaMap, gamma_3d


def _axes(shape: tuple[int, int, int], spacing_xyz: tuple[float, float, float]):
    """Coordinates (z, y, x) in mm centred on the grid, broadcastable to [z, y, x]."""
    sx, sy, sz = spacing_xyz
    z, y, x = ((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, (sz, sy, sx)))
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _broad(shape=(36, 36, 36), spacing=(2.5, 2.5, 2.5)) -> np.ndarray:
    """A wide Gaussian (sigma 60 mm): at most ~1 %/mm of gradient above 60 % of its maximum."""
    z, y, x = _axes(shape, spacing)
    return 2.0 * np.exp(-(x ** 2 + y ** 2 + z ** 2) / (2 * 60.0 ** 2))


def _edge(x_edge_mm: float, shape=(6, 6, 40), spacing=(1.0, 1.0, 1.0), axis: int = 2) -> np.ndarray:
    """1 Gy falling to 0 across x (or z) = x_edge_mm with an 80-20 % width of ~1 mm (error function)."""
    coordinate = _axes(shape, spacing)[axis]
    return np.broadcast_to(0.5 * (1 - erf((coordinate - x_edge_mm) / 0.6)), shape).copy()


def test_identical_doses_pass_everywhere_with_gamma_zero():
    dose = _broad()
    result = gamma_3d(dose, dose.copy(), (2.5, 2.5, 2.5), GammaCriteria())
    assert result.pass_rate_percent == 100.0
    assert result.evaluated_points == np.count_nonzero(dose >= 0.1 * dose.max())
    assert np.nanmax(result.gamma) == 0.0


def test_uniform_two_percent_passes_at_three_percent_global():
    dose = _broad()
    result = gamma_3d(dose, dose * 1.02, (2.5, 2.5, 2.5), GammaCriteria(3, 2))
    assert result.pass_rate_percent == 100.0
    # The difference is 2 % of the local dose, so 2/3 of the criterion at the maximum at most.
    assert np.nanmax(result.gamma) <= 2 / 3 + 1e-6


def _box_in_bath(shape=(20, 20, 20), spacing=(2.5, 2.5, 2.5)) -> np.ndarray:
    """2 Gy in a central 25 mm cube, 0.4 Gy (20 %) around it: flat on both sides of a one-voxel edge."""
    z, y, x = _axes(shape, spacing)
    inside = (np.abs(x) < 12) & (np.abs(y) < 12) & (np.abs(z) < 12)
    return np.where(inside, 2.0, 0.4) * np.ones(shape)


def test_uniform_five_percent_fails_where_the_dose_is_high():
    """Away from the edge (no gradient within the 4 mm search), 5 % of 100 % is 5/3 of the 3 % criterion."""
    dose = _box_in_bath()
    result = gamma_3d(dose, dose * 1.05, (2.5, 2.5, 2.5), GammaCriteria(3, 2))
    z, y, x = _axes(dose.shape, (2.5, 2.5, 2.5))
    core = (np.abs(x) < 7) & (np.abs(y) < 7) & (np.abs(z) < 7)
    assert (dose[core] > 0.6 * dose.max()).all() and core.sum() >= 216
    assert result.pass_rate_in(core) == 0.0
    np.testing.assert_allclose(result.gamma[core], 0.05 / 0.03, rtol=1e-5)
    # In the 20 % bath, 5 % of the dose is a third of 3 % of the maximum.
    bath = dose < 0.5
    assert result.pass_rate_in(bath) == 100.0
    np.testing.assert_allclose(result.gamma[bath], 0.05 * 0.4 / (0.03 * 2.0), rtol=1e-5)


def test_a_one_mm_shift_of_a_steep_edge_passes_at_2_mm_but_not_at_half_a_mm():
    reference, evaluated = _edge(0.0), _edge(-1.0)  # the evaluated edge 1 mm back along x
    at_2mm = gamma_3d(reference, evaluated, (1.0, 1.0, 1.0), GammaCriteria(3, 2))
    at_half_mm = gamma_3d(reference, evaluated, (1.0, 1.0, 1.0), GammaCriteria(3, 0.5))
    steep = np.abs(evaluated - reference) > 0.1  # the edge, where the dose difference alone fails by far
    assert steep.sum() >= 36
    assert at_2mm.pass_rate_percent == 100.0
    assert np.nanmax(at_2mm.gamma) <= 0.5 + 1e-6  # the exact match is 1 mm away: gamma = 1 / 2
    assert at_half_mm.pass_rate_in(steep) == 0.0
    assert at_half_mm.pass_rate_percent < 100.0


def test_local_and_global_differ_in_the_low_dose_region():
    """+1 % of the maximum everywhere: 1/3 of a 3 % global criterion, 5 % of a 20 % dose locally."""
    spacing = (2.5, 2.5, 2.5)
    reference = _box_in_bath(spacing=spacing)
    evaluated = reference + 0.02
    global_ = gamma_3d(reference, evaluated, spacing, GammaCriteria(3, 2))
    local = gamma_3d(reference, evaluated, spacing, GammaCriteria(3, 2, local=True))
    low, high = reference < 0.5, reference > 1.9
    assert global_.pass_rate_percent == 100.0
    assert local.pass_rate_in(high) == 100.0
    assert local.pass_rate_in(low) == 0.0
    np.testing.assert_allclose(local.gamma[low], 0.02 / (0.03 * 0.4), rtol=1e-5)
    np.testing.assert_allclose(global_.gamma[low], 0.02 / (0.03 * 2.0), rtol=1e-5)


def test_the_threshold_excludes_low_reference_doses_and_leaves_them_nan():
    dose = _broad(shape=(30, 30, 30), spacing=(5.0, 5.0, 5.0))
    for threshold in (10.0, 50.0, 90.0):
        result = gamma_3d(dose, dose * 1.01, (5.0, 5.0, 5.0), GammaCriteria(3, 2, threshold))
        evaluated = dose >= threshold / 100 * dose.max()
        assert result.evaluated_points == evaluated.sum() > 0
        assert np.array_equal(~np.isnan(result.gamma), evaluated)
        assert result.gamma.dtype == np.float32
    assert gamma_3d(dose, dose, (5.0, 5.0, 5.0), GammaCriteria(3, 2, 0.0)).evaluated_points == dose.size


def test_anisotropic_spacing_is_read_as_x_y_z():
    """An edge along z moved back by one slice: 3 mm at (1, 1, 3) mm spacing, so it needs a DTA of 3 mm or more."""
    spacing = (1.0, 1.0, 3.0)
    shape = (30, 5, 5)
    reference, evaluated = _edge(0.0, shape, spacing, axis=0), _edge(-3.0, shape, spacing, axis=0)
    steep = np.abs(evaluated - reference) > 0.1
    assert steep.any()
    assert gamma_3d(reference, evaluated, spacing, GammaCriteria(3, 2)).pass_rate_in(steep) == 0.0
    passing = gamma_3d(reference, evaluated, spacing, GammaCriteria(3, 5))
    assert passing.pass_rate_percent == 100.0
    # The match is 3 mm away: gamma 3/5, a little more where the sampled sphere misses the exact direction.
    assert 3 / 5 - 1e-6 <= np.nanmax(passing.gamma) <= 3 / 5 + 0.1
    # Read as (z, y, x) the shift would be 1 mm, and 2 mm would pass: it must not.
    across = gamma_3d(reference, evaluated, (3.0, 1.0, 1.0), GammaCriteria(3, 2))
    assert across.pass_rate_percent == 100.0


@pytest.mark.parametrize("max_gamma", [1.5, 2.0, 3.0])
def test_the_map_is_capped_at_max_gamma(max_gamma):
    dose = _broad()
    result = gamma_3d(dose, dose * 2.0, (2.5, 2.5, 2.5), GammaCriteria(3, 2), max_gamma=max_gamma)
    assert np.nanmax(result.gamma) == pytest.approx(max_gamma)
    assert result.pass_rate_percent < 100.0


def test_pass_rate_in_a_mask_and_of_no_point():
    dose = _broad()
    result = gamma_3d(dose, dose * 1.05, (2.5, 2.5, 2.5), GammaCriteria(3, 2))
    assert isinstance(result, GammaMap)
    assert result.pass_rate_in(np.zeros(dose.shape, bool)) is None
    everywhere = result.pass_rate_in(np.ones(dose.shape, bool))
    assert everywhere == pytest.approx(result.pass_rate_percent)
    assert 0.0 < everywhere < 100.0


@pytest.mark.parametrize(("reference", "evaluated", "spacing", "criteria", "message"), [
    (np.ones((4, 4, 4)), np.ones((4, 4, 5)), (1, 1, 1), GammaCriteria(), "evaluated dose has shape"),
    (np.ones((4, 4)), np.ones((4, 4)), (1, 1, 1), GammaCriteria(), "3D"),
    (np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1, 0, 1), GammaCriteria(), "spacing_mm"),
    (np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1, 1, -2), GammaCriteria(), "spacing_mm"),
    (np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1, 1), GammaCriteria(), "spacing_mm"),
    (np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1, 1, 1), GammaCriteria(dose_percent=0), "dose criterion"),
    (np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1, 1, 1), GammaCriteria(distance_mm=-1), "distance criterion"),
    (np.ones((4, 4, 4)), np.ones((4, 4, 4)), (1, 1, 1), GammaCriteria(low_dose_threshold_percent=100),
     "low-dose threshold"),
    (np.zeros((4, 4, 4)), np.ones((4, 4, 4)), (1, 1, 1), GammaCriteria(), "no positive value"),
    (np.ones((4, 4, 4)), np.full((4, 4, 4), np.nan), (1, 1, 1), GammaCriteria(), "NaN"),
])
def test_bad_inputs_raise_value_error(reference, evaluated, spacing, criteria, message):
    with pytest.raises(ValueError, match=message):
        gamma_3d(reference, evaluated, spacing, criteria)


def test_bad_search_options_raise_value_error():
    dose = np.ones((4, 4, 4))
    with pytest.raises(ValueError, match="max_gamma"):
        gamma_3d(dose, dose, (1, 1, 1), GammaCriteria(), max_gamma=0)
    with pytest.raises(ValueError, match="interp_fraction"):
        gamma_3d(dose, dose, (1, 1, 1), GammaCriteria(), interp_fraction=0)

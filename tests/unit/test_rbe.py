"""RBE models against hand calculations from the published formulas (orthanc_rt.analysis.rbe)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from orthanc_rt.analysis.rbe import alpha_beta_map, describe, rbe, rbe_max_min, rbe_weighted_dose
from orthanc_rt.dicom.models import DoseGrid, LetGrid


def _lq(d: float, ab: float, rbe_max: float, rbe_min: float) -> float:
    return (math.sqrt(ab ** 2 + 4 * d * ab * rbe_max + 4 * d ** 2 * rbe_min ** 2) - ab) / (2 * d)


def test_mcnamara_at_2_gy_5_kev_um_alpha_beta_2_equals_the_hand_calculation():
    # RBEmax = 0.99064 + 0.35605 / 2 * 5 = 1.880765; RBEmin = 1.1012 - 0.0038703 * sqrt(2) * 5 = 1.0738330
    # RBE = (sqrt(4 + 4*2*2*1.880765 + 4*4*1.073833^2) - 2) / 4 = 1.312148
    assert float(rbe("mcnamara", 2.0, 5.0, 2.0)) == pytest.approx(1.312148, abs=2e-6)
    rbe_max, rbe_min = rbe_max_min("mcnamara", np.array(5.0), 2.0)
    assert float(rbe_max) == pytest.approx(1.880765, abs=1e-6)
    assert float(rbe_min) == pytest.approx(1.1012 - 0.0038703 * math.sqrt(2) * 5, abs=1e-9)


def test_wedenberg_at_2_gy_5_kev_um_alpha_beta_2_equals_the_hand_calculation():
    # RBEmax = 1 + 0.434 * 5 / 2 = 2.085; RBEmin = 1; RBE = (sqrt(4 + 16*2.085 + 16) - 2) / 4 = 1.326198
    assert float(rbe("wedenberg", 2.0, 5.0, 2.0)) == pytest.approx(1.326198, abs=2e-6)
    assert float(rbe("wedenberg", 2.0, 5.0, 2.0)) == pytest.approx(_lq(2.0, 2.0, 2.085, 1.0), rel=1e-12)


def test_rbe_tends_to_rbe_max_at_low_dose_and_is_rbe_max_at_zero():
    rbe_max, _ = rbe_max_min("mcnamara", np.array(3.0), 10.0)
    assert float(rbe("mcnamara", 1e-6, 3.0, 10.0)) == pytest.approx(float(rbe_max), rel=1e-5)
    assert float(rbe("mcnamara", 0.0, 3.0, 10.0)) == pytest.approx(float(rbe_max), rel=1e-12)


def _grids(dose: np.ndarray, let: np.ndarray) -> tuple[DoseGrid, LetGrid]:
    geometry = dict(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0), frame_of_reference_uid="1.2.3")
    return DoseGrid(dose_gy=dose, **geometry), LetGrid(let_kev_um=let, **geometry)


def test_constant_model_is_1_1_times_the_physical_dose_and_effective():
    rng = np.random.default_rng(1)
    dose, let = _grids(rng.uniform(0, 60, (3, 4, 5)).astype(np.float32),
                       rng.uniform(0, 15, (3, 4, 5)).astype(np.float32))
    weighted = rbe_weighted_dose(dose, let, model="constant", fractions=30)
    assert weighted.dose_type == "EFFECTIVE"
    np.testing.assert_allclose(weighted.dose_gy, 1.1 * dose.dose_gy, rtol=1e-6)


def test_variable_model_uses_the_dose_per_fraction():
    dose, let = _grids(np.full((1, 1, 2), 60.0, np.float32), np.full((1, 1, 2), 5.0, np.float32))
    weighted = rbe_weighted_dose(dose, let, model="wedenberg", fractions=30, alpha_beta_gy=2.0)
    assert float(weighted.dose_gy[0, 0, 0]) == pytest.approx(60.0 * 1.326198, rel=2e-6)


def test_per_roi_alpha_beta_smallest_wins_where_rois_overlap():
    a, b = np.zeros((1, 1, 3), bool), np.zeros((1, 1, 3), bool)
    a[0, 0, :2], b[0, 0, 1:] = True, True
    result = alpha_beta_map((1, 1, 3), 10.0, [(a, 3.0), (b, 2.0)])
    assert result.ravel().tolist() == [3.0, 2.0, 2.0]
    assert alpha_beta_map((1, 1, 2), 10.0).ravel().tolist() == [10.0, 10.0]


@pytest.mark.parametrize("call, message", [
    (lambda: rbe("lkb", 2.0, 1.0), "unknown RBE model 'lkb'"),
    (lambda: rbe("mcnamara", 2.0, 1.0, 0.0), "α/β must be between"),
    (lambda: rbe("mcnamara", 2.0, -1.0), "LETd must be finite and not negative"),
    (lambda: rbe("mcnamara", -2.0, 1.0), "dose per fraction must be finite"),
    (lambda: alpha_beta_map((1, 1, 1), 100.0), "default α/β must be between"),
])
def test_bad_inputs_raise_specific_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_descriptions_name_model_and_parameters_and_fit_dicom():
    for model in ("constant", "mcnamara", "wedenberg"):
        assert len(describe(model, 2.0, per_roi=True)) <= 64
    assert "McNamara 2015" in describe("mcnamara", 2.0) and "a/b 2 Gy" in describe("mcnamara", 2.0)

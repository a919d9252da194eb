"""IMPT on the pelvis-like phantom (tests/support/pelvis.py) with the prostate protocol: the levers of issue 14.

One plan per module: the PTV at 0.4 of its size (about 6 cc, about 460 spots over two lateral fields) on a
2 mm CT, the prostate protocol scaled to 2 Gy, beamlets and optimiser on the 3 mm optimisation grid, the final
dose on the CT's 2 mm grid stopping at 2 % statistical uncertainty (cap 1e7 primaries, never reached here). Checked: the
grids, the agreement of the optimiser's coarse prediction with the fine final dose (tolerances below), the
uncertainty reached, the clinical goals in the result, and the memory refusal.
"""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.dvh_metrics import roi_dose_metrics
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.request import PlanRequest
from tests.support.pelvis import pelvis_case
from worker.engines.mcsquare import ScoringGrid
from worker.planning.impt import mask_on_grid, plan_impt, require_memory_for_beamlets

RX_GY = 2.0
UNCERTAINTY_PCT = 2.0
# Coarse (3 mm beamlet sum, 1000 primaries per spot) against fine (2 mm Monte Carlo at 2 %): the target's D95 and
# mean dose agree within these fractions of the prescription. The optimiser fits the coarse grid (its D95 reads
# close to D50), the fine dose shows the spread that partial-volume averaging at the target's edge hid, and noise
# lowers a D95 read off the fine dose (a uniform dose with 2 % noise per voxel has its D95 1.645 x 2 = 3.3 % low).
# Measured (460 spots): D95 1.995 Gy coarse, 1.911 Gy fine (4.2 % of the prescription); 1.962 / 1.874 (4.4 %)
# with our optimiser; 6.0 % once with OpenTPS' (2026-11-29). Dmean: 0.3 %.
D95_TOLERANCE = 0.07
DMEAN_TOLERANCE = 0.03
# The fine dose's D95 is read off 2 % noise: measured 95.5, 93.7 and 93.6 % of the prescription; below this the
# plan itself would be wrong (a target underdosed beyond noise).
FINE_D95_FLOOR = 0.91


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    case = pelvis_case(0.4)
    request = PlanRequest.from_dict({"target_roi": "PTV", "protocol": "prostate", "prescription_gy": RX_GY,
                                     "fractions": 1, "beamlet_primaries": 1000, "final_primaries": 10_000_000,
                                     "final_uncertainty_pct": UNCERTAINTY_PCT, "scoring_spacing_mm": None})
    result = plan_impt(case.ct, case.masks, request, work_dir=tmp_path_factory.mktemp("pelvis"), threads=1)
    return case, request, result


@pytest.mark.physics
def test_the_optimiser_works_on_the_coarse_grid_and_the_final_dose_on_the_ct_grid(planned):
    case, _, result = planned
    assert result.dose.spacing_mm == pytest.approx(case.ct.spacing_mm)
    assert result.dose.dose_gy.shape == case.ct.shape_zyx
    assert result.optimizer_dose.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    assert result.optimizer_dose.dose_gy.size < result.dose.dose_gy.size / 3  # (3/2)^3 = 3.4 times fewer voxels


@pytest.mark.physics
def test_the_coarse_prediction_and_the_fine_final_dose_agree(planned):
    case, _, result = planned
    coarse = result.optimizer_dose
    grid = ScoringGrid(origin_mm=coarse.origin_mm, spacing_mm=coarse.spacing_mm,
                       size_xyz=coarse.dose_gy.shape[::-1])
    predicted = roi_dose_metrics(coarse.dose_gy, mask_on_grid(case.masks["PTV"], case.ct, grid))
    final = result.qa["PTV"]
    assert abs(predicted["D95"] - final["D95"]) <= D95_TOLERANCE * RX_GY, (predicted, final)
    assert abs(predicted["Dmean"] - final["Dmean"]) <= DMEAN_TOLERANCE * RX_GY, (predicted, final)
    assert final["D95"] >= FINE_D95_FLOOR * RX_GY, final


@pytest.mark.physics
def test_the_final_dose_stops_at_the_requested_uncertainty(planned):
    _, _, result = planned
    assert result.final_uncertainty_pct is not None and 0.0 < result.final_uncertainty_pct <= UNCERTAINTY_PCT


@pytest.mark.physics
def test_the_protocol_goals_are_evaluated_on_the_final_dose(planned):
    case, request, result = planned
    by_metric = {(g["roi"], g["metric"]): g for g in result.goals}
    assert len(result.goals) == len(request.goals) == 6
    d95 = by_metric[("PTV", "D95")]
    assert d95["value"] == pytest.approx(result.qa["PTV"]["D95"], abs=1e-3)
    assert d95["passed"] is (d95["value"] >= d95["min"])
    rectum = by_metric[("Rectum", "V1.84211Gy")]
    dose = result.dose.dose_gy[case.masks["Rectum"]]
    assert rectum["value"] == pytest.approx(100.0 * np.mean(dose >= 70.0 / 76.0 * RX_GY), abs=1e-3)
    assert rectum["unit"] == "%" and isinstance(rectum["passed"], bool)
    # The femoral heads sit in both fields' entrance: far below the prescription, as the goal wants.
    for side in ("FemoralHead_L", "FemoralHead_R"):
        assert by_metric[(side, "Dmax")]["passed"] is True, by_metric[(side, "Dmax")]


def test_a_beamlet_matrix_beyond_the_memory_is_refused_with_the_estimate_and_the_remedy():
    fine = ScoringGrid(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0), size_xyz=(256, 256, 140))
    with pytest.raises(PlanRequestError, match=r"7000 spots on a 1x1x1 mm grid would need about 7.2 GB, more "
                                               r"than the 3.2 GB.*coarser optimization_grid_mm"):
        require_memory_for_beamlets(7000, fine, available=4e9)
    coarse = ScoringGrid(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(3.0, 3.0, 3.0), size_xyz=(86, 86, 47))
    require_memory_for_beamlets(7000, coarse, available=4e9)  # 7000 x 7100 x 16 B = 0.8 GB: fits
    with pytest.raises(PlanRequestError, match="x 21 scenarios"):  # a robust plan: 17 GB
        require_memory_for_beamlets(7000, coarse, 21, available=4e9)

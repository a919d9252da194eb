"""IMPT on a small water phantom: real spot placement, MCsquare beamlets, optimisation and final dose.

One plan is made per module (fixture `planned`) and checked from several sides.
Cost measured on the 2-core dev machine with threads=1 (another engineer's
tests running alongside): the 15 mm target with a 5 mm margin gives about 270
spots in 7 layers; beamlets at 3000 primaries per spot take about 7 s,
L-BFGS-B (300 iterations) 1-2 s, the final dose at 4e6 primaries about 22 s
(fixture: 31 s); the recomputation in the last test another 24 s. Measured
results over three runs: D95 1.936-1.939 Gy (>= 96.8 %), D5 2.089-2.094 Gy
(<= 104.7 %); at 2e6 final primaries one run reached D5 = 107.1 %, which is
why the final dose gets 4e6.
"""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.dvh_metrics import roi_dose_metrics
from orthanc_rt.dicom.ion_plan import build_ion_plan, read_ion_plan
from orthanc_rt.planning.request import PlanRequest
from tests.support.cases import small_phantom_case
from worker.engines.proton_dose import compute_dose, scoring_grid
from worker.planning.impt import STAGES, mask_on_grid, plan_impt

RX_GY = 2.0
FINAL_PRIMARIES = 4_000_000


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    case = small_phantom_case("impt-phantom")
    stages: list[tuple[str, float]] = []
    request = PlanRequest("TargetVolume", RX_GY, fractions=2, beam_count=1, beamlet_primaries=3000,
                          final_primaries=FINAL_PRIMARIES, final_uncertainty_pct=None)  # exactly 4e6: see above
    result = plan_impt(case.ct_volume, {"TargetVolume": case.target_mask, "External": case.external_mask}, request,
                       work_dir=tmp_path_factory.mktemp("impt"), threads=1,
                       on_progress=lambda stage, fraction: stages.append((stage, fraction)))
    return case, result, stages


@pytest.mark.physics
def test_one_beam_covers_the_target_homogeneously(planned):
    case, result, _ = planned
    qa = result.qa["TargetVolume"]
    assert qa["D95"] >= 0.95 * RX_GY, qa
    assert qa["D5"] <= 1.07 * RX_GY, qa
    assert qa["V95%"] >= 95.0 and 0.0 < qa["HI"] < 0.15, qa
    assert result.optimizer.objective_final < result.optimizer.objective_initial
    assert set(result.qa) == {"TargetVolume", "External"} and result.qa["External"]["Dmax"] >= qa["Dmax"]
    assert result.optimizer.iterations >= 1 and result.spot_count > 100 and result.layer_count >= 3


@pytest.mark.physics
def test_progress_reports_every_stage_in_order(planned):
    _, _, stages = planned
    seen = [stage for stage, _ in stages]
    assert [s for k, s in enumerate(seen) if k == 0 or s != seen[k - 1]] == list(STAGES)
    assert all(0.0 <= fraction <= 1.0 for _, fraction in stages)
    for stage in STAGES:
        fractions = [f for s, f in stages if s == stage]
        assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    # The optimiser moves between its ends: one report per iteration (our optimiser's callback).
    optimizing = [f for s, f in stages if s == STAGES[2]]
    assert len([f for f in optimizing if 0.0 < f < 1.0]) >= 5, optimizing


@pytest.mark.physics
def test_the_plan_exports_as_an_rt_ion_plan(planned):
    case, result, _ = planned
    plan = result.plan
    assert plan.fractions_planned == 2 and plan.frame_of_reference_uid == case.study.frame_of_reference_uid
    ds = build_ion_plan(case.study, plan.beams, sop_instance_uid=plan.sop_instance_uid,
                        series_instance_uid=plan.series_instance_uid, label=plan.label,
                        fractions_planned=plan.fractions_planned)
    back = read_ion_plan(ds)
    assert back.spot_count == plan.spot_count
    assert back.beams[0].meterset_mu == pytest.approx(plan.beams[0].meterset_mu, rel=1e-5)
    assert back.beams[0].isocenter_mm == pytest.approx(case.target_center_mm, abs=1.5)


@pytest.mark.physics
def test_recomputed_dose_of_the_exported_plan_matches_within_noise(planned, tmp_path):
    """The dose-on-store path (compute_dose of the stored plan) gives the planned dose back.

    Against the final dose (same plan, same primaries): two Monte Carlo runs
    differ by noise only, so the mean target dose agrees within 2 % and the
    voxelwise differences in the high-dose region centre on zero. Against the
    optimiser's beamlet dose: same mean target dose within 3 % (beamlets are
    noisier: 3000 primaries per spot).
    """
    case, result, _ = planned
    again = compute_dose(case.ct_volume, result.plan, primaries=FINAL_PRIMARIES, work_dir=tmp_path, threads=1)
    assert again.dose_gy.shape == result.dose.dose_gy.shape
    assert again.origin_mm == pytest.approx(result.dose.origin_mm)
    target = mask_on_grid(case.target_mask, case.ct_volume, scoring_grid(case.ct_volume, None))
    planned_mean = roi_dose_metrics(result.dose.dose_gy, target)["Dmean"]
    assert roi_dose_metrics(again.dose_gy, target)["Dmean"] == pytest.approx(planned_mean, rel=0.02)
    assert roi_dose_metrics(result.optimizer_dose.dose_gy, target)["Dmean"] == pytest.approx(planned_mean, rel=0.03)

    high = result.dose.dose_gy > 0.5 * RX_GY
    difference = (again.dose_gy[high] - result.dose.dose_gy[high]).astype(np.float64)
    spread = difference.std()
    assert abs(difference.mean()) < 4 * spread / np.sqrt(difference.size) + 0.005 * RX_GY
    assert spread < 0.05 * RX_GY  # per-voxel noise of two 4e6-primary runs on 3 mm voxels

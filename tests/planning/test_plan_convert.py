"""An optimised OpenTPS plan survives OpenTPS -> IonPlan -> RT Ion Plan DICOM -> IonPlan unchanged."""
from __future__ import annotations

import numpy as np
import pytest
from opentps.core.data.images import ROIMask
from opentps.core.data.plan._protonPlanDesign import ProtonPlanDesign

from orthanc_rt.dicom.builders import build_ion_plan
from orthanc_rt.dicom.ion_plan import read_ion_plan
from orthanc_rt.dicom.phantom import case_uid
from tests.util import small_phantom_case
from worker.dose_engine import default_beam_model, to_opentps_ct
from worker.plan_convert import from_opentps_plan


def designed_plan(case, gantry=(0.0, 90.0), couch=(0.0, 10.0)):
    """Spots placed by OpenTPS on the phantom's target (no Monte Carlo), as the planner does."""
    ct = case.ct_volume
    design = ProtonPlanDesign()
    design.ct = to_opentps_ct(ct)
    design.calibration = default_beam_model().calibration
    design.gantryAngles, design.couchAngles = list(gantry), list(couch)
    design.beamNames = [f"B{k + 1}" for k in range(len(gantry))]
    design.spotSpacing = design.layerSpacing = 6.0
    design.targetMargin = 3.0
    target = ROIMask(imageArray=np.ascontiguousarray(case.target_mask.transpose(2, 1, 0)), name="TargetVolume",
                     origin=ct.origin_mm, spacing=ct.spacing_mm)
    design.defineTargetMaskAndPrescription(target=target, targetPrescription=2.0)
    return design.buildPlan()


def test_opentps_plan_to_dicom_and_back():
    case = small_phantom_case("plan-convert")
    plan = designed_plan(case)
    plan.numberOfFractionsPlanned = 3
    rng = np.random.default_rng(7)
    mu = rng.uniform(0.01, 2.0, plan.numberOfSpots)
    mu[::5] = 0.0  # optimisers leave spots at zero: they are not exported
    plan.spotMUs = mu
    assert plan.numberOfSpots > 50 and len(list(plan)) == 2

    ion = from_opentps_plan(plan, sop_instance_uid=case_uid("plan-convert", "impt"),
                            series_instance_uid=case_uid("plan-convert", "impt-series"),
                            study_instance_uid=case.study.study_instance_uid,
                            frame_of_reference_uid=case.study.frame_of_reference_uid, label="IMPT")
    assert ion.fractions_planned == 3 and ion.spot_count == int(np.count_nonzero(mu))
    ds = build_ion_plan(case.study, ion.beams, sop_instance_uid=ion.sop_instance_uid,
                        series_instance_uid=ion.series_instance_uid, label=ion.label,
                        fractions_planned=ion.fractions_planned)
    back = read_ion_plan(ds)

    assert back.fractions_planned == 3 and len(back.beams) == len(list(plan)) == 2
    for original, read in zip(plan, back.beams):
        assert read.gantry_angle_deg == pytest.approx(original.gantryAngle)
        assert read.couch_angle_deg == pytest.approx(original.couchAngle)
        assert read.isocenter_mm == pytest.approx(tuple(original.isocenterPosition), abs=1e-3)
        kept = [layer for layer in original if np.any(np.asarray(layer.spotMUs) > 0)]
        assert [l.nominal_energy_mev for l in read.layers] == pytest.approx([l.nominalEnergy for l in kept], abs=1e-3)
        for want, got in zip(kept, read.layers):
            keep = np.asarray(want.spotMUs) > 0
            # ScanSpotPositionMap and ScanSpotMetersetWeights are float32 (FL).
            np.testing.assert_allclose(got.spot_x_mm, np.asarray(want.spotX)[keep], rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(got.spot_y_mm, np.asarray(want.spotY)[keep], rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(got.spot_mu, np.asarray(want.spotMUs)[keep], rtol=1e-5)
        assert read.meterset_mu == pytest.approx(float(np.sum(original.spotMUs)), rel=1e-5)

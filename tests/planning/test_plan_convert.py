"""An optimised OpenTPS plan survives OpenTPS -> IonPlan -> RT Ion Plan DICOM -> IonPlan unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom.ion_plan import build_ion_plan, read_ion_plan
from orthanc_rt.ops.phantom import case_uid
from tests.support.cases import small_phantom_case
from tests.support.opentps_plans import designed_plan
from worker.engines.plan_convert import from_opentps_plan


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

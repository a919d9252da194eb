"""PlanRequest validation: refused before anything runs, with messages the REST layer can return as 400."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.analysis.dvh_metrics import (
    dose_at_volume_interpolated,
    roi_dose_metrics,
    target_dose_metrics,
)
from orthanc_rt.dicom.models import CtVolume
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.request import Objective, PlanRequest, Robustness
from worker.planning.impt import plan_impt, validate_request

CT = CtVolume(hu=np.zeros((4, 5, 6), dtype=np.float32), origin_mm=(0.0, 0.0, 0.0), spacing_mm=(2.0, 2.0, 2.0),
              frame_of_reference_uid="1.2.3")


def structures() -> dict[str, np.ndarray]:
    target = np.zeros(CT.shape_zyx, dtype=bool)
    target[1:3, 2:4, 2:4] = True
    return {"PTV": target, "Body": np.ones(CT.shape_zyx, dtype=bool)}


def refused(request: PlanRequest, match: str, rois: dict | None = None) -> None:
    with pytest.raises(PlanRequestError, match=match):
        validate_request(request, structures() if rois is None else rois, CT)


def test_a_sound_request_passes_and_errors_are_value_errors():
    validate_request(PlanRequest("PTV", 2.0, beam_count=3), structures(), CT)
    assert issubclass(PlanRequestError, ValueError)


def test_unknown_target_lists_the_available_rois():
    refused(PlanRequest("CTV", 2.0), r"target ROI 'CTV' is not in the structure set \(available: Body, PTV\)")


def test_unknown_objective_roi_lists_the_available_rois():
    request = PlanRequest("PTV", 2.0, objectives=(Objective("Rectum", "DMax", 1.0),))
    refused(request, r"objective 1 \(DMax on Rectum\): ROI 'Rectum' is not in the structure set "
                     r"\(available: Body, PTV\)")


@pytest.mark.parametrize("dose", [0.0, -2.0, 150.0])
def test_prescription_out_of_range(dose):
    refused(PlanRequest("PTV", dose), r"prescription_gy must be between 0\.1 and 100 Gy")


@pytest.mark.parametrize("count", [0, 10])
def test_beam_count_outside_one_to_nine(count):
    refused(PlanRequest("PTV", 2.0, beam_count=count), r"beam_count must be from 1 to 9")


def test_ten_gantry_angles_and_mismatched_couch_angles():
    refused(PlanRequest("PTV", 2.0, gantry_angles_deg=tuple(range(0, 360, 36))), r"a plan has 1 to 9 beams, not 10")
    refused(PlanRequest("PTV", 2.0, gantry_angles_deg=(0.0, 90.0), couch_angles_deg=(0.0,)),
            r"2 gantry angles but 1 couch angles")


def test_dvh_objective_without_volume():
    request = PlanRequest("PTV", 2.0, objectives=(Objective("PTV", "DVHMin", 1.9),))
    refused(request, r"objective 1 \(DVHMin on PTV\): a DVH objective needs volume_pct")
    request = PlanRequest("PTV", 2.0, objectives=(Objective("PTV", "DVHMax", 2.1, volume_pct=100.0),))
    refused(request, r"volume_pct must be between 0 and 100")


def test_unknown_objective_type_and_optimizer():
    refused(PlanRequest("PTV", 2.0, objectives=(Objective("PTV", "EUD", 2.0),)),
            r"objective 1: type 'EUD' is not one of DMin, DMax, DMean, DUniform, DVHMin, DVHMax")
    refused(PlanRequest("PTV", 2.0, optimizer="Adam"), r"optimizer 'Adam' is not one of Scipy_L-BFGS-B")


def test_spacings_fractions_and_primaries():
    refused(PlanRequest("PTV", 2.0, spot_spacing_mm=0.2), r"spot_spacing_mm must be between 1 and 20 mm")
    refused(PlanRequest("PTV", 2.0, fractions=0), r"fractions must be a whole number from 1 to 60")
    refused(PlanRequest("PTV", 2.0, beamlet_primaries=10), r"beamlet_primaries must be a whole number of at least 100")


def test_robustness_errors_out_of_range():
    validate_request(PlanRequest("PTV", 2.0, robustness=Robustness(setup_mm=3.0, range_pct=3.0)), structures(), CT)
    refused(PlanRequest("PTV", 2.0, robustness=Robustness(setup_mm=-1.0)),
            r"robustness setup_mm must be between 0 and 10, not -1\.0")
    refused(PlanRequest("PTV", 2.0, robustness=Robustness(range_pct=25.0)),
            r"robustness range_pct must be between 0 and 10, not 25\.0")


def test_empty_or_misshapen_masks():
    rois = structures()
    rois["PTV"] = np.zeros(CT.shape_zyx, dtype=bool)
    refused(PlanRequest("PTV", 2.0), r"ROI 'PTV' is empty on the CT grid", rois)
    rois["PTV"] = np.ones((3, 3, 3), dtype=bool)
    refused(PlanRequest("PTV", 2.0), r"ROI 'PTV': mask shape \(3, 3, 3\) is not the CT's \(4, 5, 6\)", rois)


def test_plan_impt_validates_before_writing_anything(tmp_path):
    with pytest.raises(PlanRequestError):
        plan_impt(CT, structures(), PlanRequest("GTV", 2.0), work_dir=tmp_path / "job")
    assert not (tmp_path / "job").exists()


def test_default_objectives_and_evenly_spaced_beams():
    request = PlanRequest("PTV", 60.0, beam_count=3)
    assert request.gantry_angles == (0.0, 120.0, 240.0) and request.couch_angles == (0.0, 0.0, 0.0)
    assert [o.type for o in request.effective_objectives] == ["DUniform", "DMin", "DMax"]
    assert all(o.roi == "PTV" for o in request.effective_objectives)


def test_dvh_metrics_of_a_known_dose():
    dose = np.arange(100, dtype=np.float64).reshape(4, 5, 5) / 10.0  # 0.0 .. 9.9 Gy, one voxel each
    mask = np.ones_like(dose, dtype=bool)
    metrics = roi_dose_metrics(dose, mask)
    assert metrics["Dmin"] == 0.0 and metrics["Dmax"] == 9.9 and metrics["Dmean"] == pytest.approx(4.95)
    assert metrics["D50"] == pytest.approx(4.95) and metrics["D95"] == pytest.approx(0.495)
    assert dose_at_volume_interpolated(dose.ravel(), 2) == pytest.approx(9.702)
    target = dose >= 5.0  # 50 voxels; 95 % of 6 Gy is 5.7 Gy
    qa = target_dose_metrics(dose, target, 6.0)
    assert qa["V95%"] == pytest.approx(100.0 * 43 / 50)
    assert qa["CI_RTOG"] == pytest.approx(43 / 50) and qa["CI_Paddick"] == pytest.approx(43 * 43 / (50 * 43))
    assert qa["HI"] == pytest.approx((qa["D2"] - qa["D98"]) / qa["D50"])


def test_request_from_json_like_data():
    request = PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0, "gantry_angles_deg": [0, 90],
                                     "objectives": [{"roi": "PTV", "type": "DVHMin", "dose_gy": 1.9,
                                                     "volume_pct": 95}]})
    assert request.gantry_angles == (0.0, 90.0) and request.objectives[0].volume_pct == 95
    validate_request(request, structures(), CT)
    with pytest.raises(PlanRequestError, match=r"unknown plan request field\(s\) beams; known: "):
        PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0, "beams": 2})
    with pytest.raises(PlanRequestError, match=r"a plan request needs prescription_gy"):
        PlanRequest.from_dict({"target_roi": "PTV"})
    with pytest.raises(PlanRequestError, match=r"objective 1: .*unexpected keyword argument 'dose'"):
        PlanRequest.from_dict({"target_roi": "PTV", "prescription_gy": 2.0,
                               "objectives": [{"roi": "PTV", "type": "DMin", "dose": 2.0}]})


def test_numbers_given_as_text_are_refused_with_the_field_name():
    refused(PlanRequest("PTV", "2"), r"prescription_gy must be a number, not '2'")
    refused(PlanRequest("PTV", float("nan")), r"prescription_gy must be a number, not nan")
    refused(PlanRequest("PTV", 2.0, objectives=(Objective("PTV", "DMin", "2"),)),
            r"objective 1 \(DMin on PTV\): dose_gy must be a number, not '2'")

"""PhotonPlanRequest validation: refused before the CCC engine runs, with messages the REST layer can return as 400."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from orthanc_rt.dicom.models import CtVolume
from worker.photon_planning import PhotonObjective, PhotonPlanError, PhotonPlanRequest, plan_photon, \
    validate_request

CT = CtVolume(hu=np.zeros((4, 5, 6), dtype=np.float32), origin_mm=(0.0, 0.0, 0.0), spacing_mm=(2.0, 2.0, 2.0),
              frame_of_reference_uid="1.2.3")


def structures() -> dict[str, np.ndarray]:
    target = np.zeros(CT.shape_zyx, dtype=bool)
    target[1:3, 2:4, 2:4] = True
    return {"PTV": target, "Body": np.ones(CT.shape_zyx, dtype=bool), "Empty": np.zeros(CT.shape_zyx, dtype=bool)}


def refused(request: PhotonPlanRequest, match: str) -> None:
    with pytest.raises(PhotonPlanError, match=match):
        validate_request(request, structures(), CT)


def test_a_sound_request_passes_and_errors_are_value_errors():
    validate_request(PhotonPlanRequest("PTV", 2.0, gantry_angles_deg=(0.0, 120.0, 240.0)), structures(), CT)
    assert issubclass(PhotonPlanError, ValueError)


def test_objectives_come_as_dataclasses_dicts_or_any_object_with_those_attributes():
    request = PhotonPlanRequest("PTV", 2.0, objectives=(
        PhotonObjective("PTV", "DMin", 2.0), {"roi": "Body", "type": "DVHMax", "dose_gy": 1.0, "volume_pct": 10.0},
        SimpleNamespace(roi="PTV", type="DMax", dose_gy=2.1, weight=2.0, volume_pct=None, robust=None)))
    validate_request(request, structures(), CT)
    assert request.effective_objectives[1] == PhotonObjective("Body", "DVHMax", 1.0, 1.0, 10.0)
    assert request.effective_objectives[2] == PhotonObjective("PTV", "DMax", 2.1, 2.0)


@pytest.mark.parametrize("request_, match", [
    (PhotonPlanRequest("CTV", 2.0), r"target ROI 'CTV' is not in the structure set \(available: Body, Empty, PTV\)"),
    (PhotonPlanRequest("PTV", 150.0), r"prescription_gy must be between 0\.1 and 100 Gy, not 150\.0"),
    (PhotonPlanRequest("PTV", 2.0, gantry_angles_deg=()), r"a plan has 1 to 9 beams, not 0"),
    (PhotonPlanRequest("PTV", 2.0, gantry_angles_deg=tuple(range(10))), r"a plan has 1 to 9 beams, not 10"),
    (PhotonPlanRequest("PTV", 2.0, gantry_angles_deg=(float("nan"),)), r"gantry angles must be finite degrees"),
    (PhotonPlanRequest("PTV", 2.0, beamlet_spacing_mm=0.5), r"beamlet_spacing_mm must be between 2 and 20 mm"),
    (PhotonPlanRequest("PTV", 2.0, fractions=0), r"fractions must be a whole number from 1 to 60, not 0"),
    (PhotonPlanRequest("PTV", 2.0, max_iterations=0), r"max_iterations must be from 1 to 10000, not 0"),
    (PhotonPlanRequest("PTV", 2.0, optimizer="Adam"), r"optimizer 'Adam' is not one of Scipy_L-BFGS-B"),
    (PhotonPlanRequest("PTV", 2.0, scoring_spacing_mm=0.5),
     r"scoring_spacing_mm must be between 1 and 10 mm, not 0\.5"),
    (PhotonPlanRequest("PTV", 2.0, objectives=({"roi": "PTV", "type": "DVHMin", "dose_gy": 2.0},)),
     r"objective 1 \(DVHMin on PTV\): a DVH objective needs volume_pct \(0-100\)"),
    (PhotonPlanRequest("PTV", 2.0, objectives=({"roi": "PTV", "type": "EUD", "dose_gy": 2.0},)),
     r"objective 1: type 'EUD' is not one of DMin, DMax, DMean, DUniform, DVHMin, DVHMax"),
    (PhotonPlanRequest("PTV", 2.0, objectives=({"roi": "PTV", "type": "DMin", "dose": 2.0},)),
     r"objective 1: unknown field\(s\) dose \(fields: roi, type, dose_gy, weight, volume_pct\)"),
    (PhotonPlanRequest("PTV", 2.0, objectives=(PhotonObjective("Empty", "DMax", 1.0),)),
     r"ROI 'Empty' is empty on the CT grid"),
])
def test_bad_requests_name_the_problem(request_, match):
    refused(request_, match)


def test_plan_photon_refuses_before_running_anything(tmp_path):
    with pytest.raises(PhotonPlanError, match="target ROI 'CTV'"):
        plan_photon(CT, structures(), PhotonPlanRequest("CTV", 2.0), work_dir=tmp_path / "job")
    assert not (tmp_path / "job").exists()

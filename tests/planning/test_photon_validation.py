"""Photon plan requests: the shared validation (tests/planning/test_validation.py) plus what only the CCC
engine refuses, checked before the engine runs, with messages the REST layer returns as 400."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom.models import CtVolume
from orthanc_rt.errors import PlanRequestError
from orthanc_rt.planning.request import Objective, PlanRequest, Robustness
from worker.planning.photon import plan_photon, validate_request

CT = CtVolume(hu=np.zeros((4, 5, 6), dtype=np.float32), origin_mm=(0.0, 0.0, 0.0), spacing_mm=(2.0, 2.0, 2.0),
              frame_of_reference_uid="1.2.3")


def structures() -> dict[str, np.ndarray]:
    target = np.zeros(CT.shape_zyx, dtype=bool)
    target[1:3, 2:4, 2:4] = True
    return {"PTV": target, "Body": np.ones(CT.shape_zyx, dtype=bool), "Empty": np.zeros(CT.shape_zyx, dtype=bool)}


def test_a_sound_request_passes():
    validate_request(PlanRequest("PTV", 2.0, gantry_angles_deg=(0.0, 120.0, 240.0)), structures(), CT)
    validate_request(PlanRequest("PTV", 2.0, beam_count=5, beamlet_spacing_mm=10.0), structures(), CT)


@pytest.mark.parametrize("request_, match", [
    (PlanRequest("CTV", 2.0), r"target ROI 'CTV' is not in the structure set \(available: Body, Empty, PTV\)"),
    (PlanRequest("PTV", 2.0, gantry_angles_deg=(0.0, 90.0), couch_angles_deg=(0.0, 10.0)),
     "photon beams with a couch rotation are not supported"),
    (PlanRequest("PTV", 2.0, robustness=Robustness(3.0, 0.0)), "robust optimisation is not available for photon"),
    (PlanRequest("PTV", 2.0, beamlet_spacing_mm=0.5), r"beamlet_spacing_mm must be between 2 and 20 mm"),
    (PlanRequest("PTV", 2.0, objectives=(Objective("Empty", "DMax", 1.0),)), r"ROI 'Empty' is empty on the CT grid"),
])
def test_bad_requests_name_the_problem(request_, match):
    with pytest.raises(PlanRequestError, match=match):
        validate_request(request_, structures(), CT)


def test_plan_photon_refuses_before_running_anything(tmp_path):
    with pytest.raises(PlanRequestError, match="target ROI 'CTV'"):
        plan_photon(CT, structures(), PlanRequest("CTV", 2.0), work_dir=tmp_path / "job")
    assert not (tmp_path / "job").exists()

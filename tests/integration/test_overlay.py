"""GET /rt/doses/{id}/overlay.png on a real stack: the dose drawn over its CT with the structures."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.support import cases as util
from tests.support.senders import rest_upload

pytestmark = pytest.mark.integration


def test_overlay_of_a_computed_dose(orthanc):
    case = util.small_phantom_case("overlay")
    rest_upload(orthanc.base, [*case.ct, case.rtstruct, case.plan])
    job = orthanc.wait_job(lambda j: j["state"] == "succeeded", study=case.study.study_instance_uid, kind="dose")
    dose_id = job["outputs"]["rtdose"]["orthanc_id"]

    for plane in ("axial", "coronal", "sagittal"):
        r = orthanc.get(f"/rt/doses/{dose_id}/overlay.png", params={"plane": plane, "window": "bone"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text[:200]
        image = Image.open(io.BytesIO(r.content)).convert("RGB")
        assert max(image.size) == 512
        pixels = list(image.getdata())
        # The wash and the structure outlines make coloured pixels; plain CT is grey.
        assert any(p[0] > p[2] + 60 for p in pixels), f"no warm (dose) colour in the {plane} image"

    assert orthanc.get(f"/rt/doses/{dose_id}/overlay.png", params={"plane": "oblique"}).status_code == 400
    assert orthanc.get(f"/rt/doses/{dose_id}/overlay.png", params={"slice": 10_000}).status_code == 400
    assert orthanc.get(f"/rt/doses/{dose_id}/overlay.png", params={"levels": "a,b"}).status_code == 400
    ct_slice = orthanc.study_instances(case.study.study_instance_uid, "CT")[0]
    assert orthanc.get(f"/rt/doses/{ct_slice}/overlay.png").status_code == 400

"""The pelvis phantom (`orthanc_rt.ops.phantom.patient_like_case`) at a chosen size, as planning takes it.

`pelvis_case(scale)` is the size knob of the planning benchmark and tests: the prostate-like PTV (an ellipsoid of
60 x 50 x 60 mm at scale 1, about 94 cc) is scaled, the body (fat, soft tissue, pelvic bone, femoral heads, bladder,
rectum with a gas pocket, in air) stays, and the field of view is cut to the PTV's length plus 30 mm on each
side in z so the CT stays small. Planning needs a CtVolume and the masks on its grid; `case` keeps the DICOM
objects (CT, RTSTRUCT) for tests that go through Orthanc.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orthanc_rt.dicom.models import CtVolume
from orthanc_rt.ops.phantom import PhantomCase, patient_like_case

PTV_SIZE_MM = (60.0, 50.0, 60.0)


@dataclass(frozen=True)
class PelvisCase:
    case: PhantomCase

    @property
    def ct(self) -> CtVolume:
        return self.case.ct_volume

    @property
    def masks(self) -> dict[str, np.ndarray]:
        return self.case.roi_masks

    @property
    def target_cc(self) -> float:
        return float(self.masks["PTV"].sum() * np.prod(self.ct.spacing_mm) / 1000.0)


def pelvis_case(scale: float = 0.6, *, spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0),
                name: str = "pelvis-plan") -> PelvisCase:
    """The phantom with its PTV scaled by `scale` (0.6: about 20 cc; 1.2: prostate-sized, about 160 cc)."""
    ptv = tuple(scale * s for s in PTV_SIZE_MM)
    length = max(ptv[2] + 60.0, 60.0)
    return PelvisCase(patient_like_case(f"{name}-{scale:g}", spacing_mm=spacing_mm, fov_mm=(320.0, 220.0, length),
                                        ptv_size_mm=ptv))

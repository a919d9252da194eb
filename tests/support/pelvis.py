"""A pelvis-like synthetic case for planning at scale: body ellipse in air, femoral heads, rectum with gas, bladder.

`pelvis_case(target_radius_mm=...)` is the size knob: the target (a sphere, "PTV") sits between the bladder
(anterior, -y in DICOM patient coordinates) and the rectum (posterior, +y, a tube along z with a gas pocket);
the femoral heads (bone) sit laterally, so two lateral fields cross them as on a real pelvis. Around 35 mm
(about 180 cc) the PTV is prostate-sized; 20 mm with 5 mm spots gives about 1,000 spots for two fields.
Only a CtVolume and masks on its grid are built (no DICOM): what `worker.planning.impt.plan_impt` takes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orthanc_rt.dicom.models import CtVolume
from orthanc_rt.dicom.uids import derive_uid

AIR_HU, TISSUE_HU, BONE_HU, URINE_HU = -1000.0, 40.0, 700.0, 10.0
ROIS = ("PTV", "Rectum", "Bladder", "FemoralHead_L", "FemoralHead_R", "External")


@dataclass(frozen=True)
class PelvisCase:
    ct: CtVolume
    masks: dict[str, np.ndarray]  # ROI name -> bool [z, y, x] on the CT grid
    target_radius_mm: float

    @property
    def target_cc(self) -> float:
        return float(self.masks["PTV"].sum() * np.prod(self.ct.spacing_mm) / 1000.0)


def pelvis_case(target_radius_mm: float = 20.0, *, spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0),
                name: str = "pelvis") -> PelvisCase:
    """The phantom around a PTV of `target_radius_mm`; OARs keep their clinical distances to it."""
    r = float(target_radius_mm)
    half = (r + 120.0, r + 75.0, r + 25.0)  # x (lateral), y (AP), z: the body plus a few cm of air laterally
    sx, sy, sz = spacing_mm
    counts = [int(np.ceil(2 * h / s)) for h, s in zip(half, spacing_mm)]
    origin = tuple(-(n - 1) * s / 2.0 for n, s in zip(counts, spacing_mm))
    z, y, x = np.meshgrid(*(o + s * np.arange(n) for o, s, n in zip(origin[::-1], spacing_mm[::-1], counts[::-1])),
                          indexing="ij")

    def ellipsoid(centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
        return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 \
            + ((z - centre[2]) / radii[2]) ** 2 <= 1.0

    body = ((x / (r + 100.0)) ** 2 + (y / (r + 60.0)) ** 2) <= 1.0
    ptv = ellipsoid((0.0, 0.0, 0.0), (r, r, r))
    rectum_y, rectum_r = r + 10.0, 14.0  # overlaps the PTV's posterior edge, as a prostate PTV does
    rectum = (((x / rectum_r) ** 2 + ((y - rectum_y) / rectum_r) ** 2) <= 1.0) & body
    gas = ((x / 6.0) ** 2 + ((y - rectum_y - 3.0) / 6.0) ** 2 + (z / 15.0) ** 2) <= 1.0
    bladder = ellipsoid((0.0, -(r + 22.0), 5.0), (32.0, 25.0, 25.0))
    heads = {side: ellipsoid((sign * (r + 55.0), 0.0, 0.0), (22.0, 22.0, 22.0))
             for side, sign in (("FemoralHead_L", 1.0), ("FemoralHead_R", -1.0))}

    hu = np.full(x.shape, AIR_HU, dtype=np.float32)
    hu[body] = TISSUE_HU
    hu[bladder & body] = URINE_HU
    for head in heads.values():
        hu[head & body] = BONE_HU
    hu[rectum] = TISSUE_HU
    hu[gas & rectum] = AIR_HU
    ct = CtVolume(hu=hu, origin_mm=origin, spacing_mm=(float(sx), float(sy), float(sz)),
                  frame_of_reference_uid=derive_uid("pelvis", name, "frame"),
                  series_instance_uid=derive_uid("pelvis", name, "ct"),
                  study_instance_uid=derive_uid("pelvis", name, "study"))
    masks = {"PTV": ptv & body, "Rectum": rectum, "Bladder": bladder & body & ~ptv, **heads,
             "External": body}
    return PelvisCase(ct=ct, masks={k: masks[k] for k in ROIS}, target_radius_mm=r)

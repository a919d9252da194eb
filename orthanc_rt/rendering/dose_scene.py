"""A stored RTDOSE with what it is shown over: the CT and the structures of its frame of reference.

Found through explicit references and the frame of reference, never by
guessing: the newest RTSTRUCT of the dose's study on the dose's
FrameOfReferenceUID, the CT series it references (else the study's CT on
that frame). Structures become masks on the CT grid (voxel centre inside the
contour, even-odd rule, each contour plane on its nearest CT slice), the
same rule the DVH analysis uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orthanc_rt.analysis.dvh import planes_mask
from orthanc_rt.dicom.ct import read_ct_series
from orthanc_rt.dicom.dose import read_rtdose
from orthanc_rt.dicom.models import CtVolume, DoseGrid
from orthanc_rt.dicom.rtstruct import StructureSet, read_structure_set
from orthanc_rt.pacs.client import OrthancApi, get_json
from orthanc_rt.pacs.inputs import fetch_series, locate_plan_ct, read_instance
from orthanc_rt.pacs.resources import find_instances, frame_of_reference_of
from orthanc_rt.rendering.overlay import Outline

_DEFAULT_COLOUR = (255, 255, 0)


@dataclass
class DoseScene:
    ct: CtVolume
    dose: DoseGrid
    outlines: list[Outline]
    structure_set_uid: str | None


def load_dose_scene(api: OrthancApi, dose_instance_id: str) -> DoseScene:
    """Raises DicomInputError for unusable DICOM and InputNotReady when the CT is missing."""
    dose_ds = read_instance(api, dose_instance_id)
    dose = read_rtdose(dose_ds)
    study = get_json(api, f"/instances/{dose_instance_id}/study")
    structures = _structure_set(api, study, dose.frame_of_reference_uid)
    ct_ref = locate_plan_ct(api, orthanc_study_id=study["ID"], frame_of_reference_uid=dose.frame_of_reference_uid,
                            structure_set_uid=structures.sop_instance_uid if structures else None)
    ct = read_ct_series(fetch_series(api, ct_ref))
    outlines = [_outline(roi, ct) for roi in structures.rois] if structures else []
    return DoseScene(ct=ct, dose=dose, outlines=[o for o in outlines if o.mask.any()],
                     structure_set_uid=structures.sop_instance_uid if structures else None)


def _structure_set(api: OrthancApi, study: dict, frame: str) -> StructureSet | None:
    study_uid = study["MainDicomTags"]["StudyInstanceUID"]
    candidates = [i for i in find_instances(api, "RTSTRUCT", StudyInstanceUID=study_uid)
                  if frame_of_reference_of(api, i, "RTSTRUCT") == frame]
    if not candidates:
        return None
    newest = max(candidates, key=lambda i: api.get_bytes(f"/instances/{i}/metadata/ReceptionDate"))
    return read_structure_set(read_instance(api, newest))


def _outline(roi, ct: CtVolume) -> Outline:
    nz, ny, nx = ct.hu.shape
    (ox, oy, oz), (sx, sy, sz) = ct.origin_mm, ct.spacing_mm
    xs, ys = ox + sx * np.arange(nx), oy + sy * np.arange(ny)
    mask = np.zeros((nz, ny, nx), dtype=bool)
    planes = roi.planes()
    slices = {z: int(round((z - oz) / sz)) for z in planes}
    inside = [z for z, k in slices.items() if 0 <= k < nz]
    if inside:
        masks, r0 = planes_mask([planes[z] for z in inside], xs, ys)
        for plane, z in zip(masks, inside):
            mask[slices[z], r0:r0 + plane.shape[0]] |= plane
    return Outline(name=roi.name, colour=_colour(roi.color), mask=mask)


def _colour(hex_colour: str) -> tuple[int, int, int]:
    if len(hex_colour) == 7 and hex_colour.startswith("#"):
        return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    return _DEFAULT_COLOUR

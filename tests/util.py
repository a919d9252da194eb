"""Synthetic CT / RTSTRUCT / RTPLAN for tests: the one fixture module (dicompyler-core's idea).

Everything is built by `orthanc_rt.dicom.builders` (directly or through
`orthanc_rt.dicom.phantom`); tests derive variants here instead of building
DICOM themselves. The plan variants reproduce the forms commercial planning
systems export, which the reader must all accept:

- "raystation": a pair of control points per layer, weights on the first,
  zeros on the second (what `build_ion_plan` writes);
- "eclipse": the same pairs with the weights on the second control point;
- "single-cp": one control point per layer, then one closing control point.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.builders import build_ion_plan
from orthanc_rt.dicom.models import EnergyLayer, IonBeam, PatientStudy, RangeShifter
from orthanc_rt.dicom.phantom import PhantomCase, water_phantom_case
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.uids import derive_uid

STUDY = PatientStudy(patient_id="UNIT", patient_name="UNIT^TEST", study_instance_uid=derive_uid("unit", "study"),
                     frame_of_reference_uid=derive_uid("unit", "frame"))
PLAN_STYLES = ("raystation", "eclipse", "single-cp")


def small_phantom_case(name: str = "small", *, energy_mev: float | None = None, **overrides) -> PhantomCase:
    """A case cheap enough for integration tests: 3 mm voxels, 14 slices, 15 mm target at 50 mm depth.

    The water is 150 mm deep along the beam (y from -75 to 75 mm) so up to
    ~140 MeV stops inside it. Each `name` gives its own patient, study and UIDs;
    `overrides` go to `water_phantom_case`.
    """
    settings = dict(size_mm=(42.0, 150.0, 36.0), spacing_mm=3.0, target_size_mm=15.0, target_depth_mm=50.0,
                    spot_spacing_mm=5.0)
    settings.update(overrides)
    return water_phantom_case(name, energy_mev=energy_mev, **settings)


def write_case(folder: Path, case: PhantomCase) -> list[Path]:
    """The case's objects as Part 10 files in `folder` (CT slices, RTSTRUCT, plan), named by modality and UID."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in [*case.ct, case.rtstruct, case.plan]:
        path = folder / f"{ds.Modality}_{ds.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def beam(number: int = 1, *, energies: Sequence[float] = (100.0, 110.0), spots_per_layer: int = 4,
         mu: float = 0.5, gantry: float = 0.0, couch: float = 0.0, range_shifter: bool = False) -> IonBeam:
    """An IonBeam built in code, for builder/reader round trips.

    Positions, MU and range shifter values are exact in float32 (the VR of the
    spot and range shifter attributes), so a round trip can compare exactly.
    """
    layers = []
    offsets = np.arange(spots_per_layer) - (spots_per_layer - 1) / 2.0
    for k, energy in enumerate(energies):
        layers.append(EnergyLayer(nominal_energy_mev=energy, spot_x_mm=offsets * 3.0 + k,
                                  spot_y_mm=-offsets * 2.5, spot_mu=np.full(spots_per_layer, mu) * (k + 1),
                                  spot_tune_id="3.0", range_shifter_in=range_shifter))
    shifters = [RangeShifter(number=1, identifier="RS_7.5cm", type="BINARY", water_equivalent_thickness_mm=74.5,
                             isocenter_to_range_shifter_distance_mm=300.0)] if range_shifter else []
    return IonBeam(number=number, name=f"B{number}", gantry_angle_deg=gantry, couch_angle_deg=couch,
                   isocenter_mm=(1.0, -2.0, 3.0), layers=layers, meterset_mu=float(sum(l.mu for l in layers)),
                   snout_position_mm=421.0, range_shifters=shifters, treatment_machine="Generic")


def plan_of(beams: Sequence[IonBeam], *, name: str = "unit", fractions: int = 1,
            study: PatientStudy = STUDY, structure_set_uid: str | None = None) -> Dataset:
    """`build_ion_plan` with UIDs derived from `name`."""
    return build_ion_plan(study, beams, sop_instance_uid=derive_uid("unit-plan", name),
                          series_instance_uid=derive_uid("unit-plan", name, "series"), label=name[:16],
                          fractions_planned=fractions, referenced_structure_set_uid=structure_set_uid)


def commercial_style_plan(style: str = "raystation", beams: Sequence[IonBeam] | None = None, *,
                          fractions: int = 1, name: str | None = None) -> Dataset:
    """A plan of `beams` (default: two beams of two layers) in one of PLAN_STYLES."""
    if style not in PLAN_STYLES:
        raise ValueError(f"style must be one of {PLAN_STYLES}, not {style!r}")
    beams = list(beams) if beams is not None else [beam(1), beam(2, energies=(120.0, 125.0, 130.0), gantry=90.0)]
    plan = plan_of(beams, name=name or style, fractions=fractions)
    if style == "eclipse":
        return weights_on_second_control_point(plan)
    if style == "single-cp":
        return one_control_point_per_layer(plan)
    return plan


def weights_on_second_control_point(plan: Dataset) -> Dataset:
    """Each layer's weights on the second control point of its pair, zeros on the first."""
    plan = _variant(plan, "eclipse")
    for item in plan.IonBeamSequence:
        cps = item.IonControlPointSequence
        for first, second in zip(cps[0::2], cps[1::2]):
            first.ScanSpotMetersetWeights, second.ScanSpotMetersetWeights = (
                second.ScanSpotMetersetWeights, first.ScanSpotMetersetWeights)
    return plan


def one_control_point_per_layer(plan: Dataset) -> Dataset:
    """Drop the zero-weight second control point of every layer but the last, which closes the beam."""
    plan = _variant(plan, "single-cp")
    for item in plan.IonBeamSequence:
        cps = list(item.IonControlPointSequence)
        kept = cps[0::2] + [cps[-1]]
        for index, cp in enumerate(kept):
            cp.ControlPointIndex = index
        item.IonControlPointSequence = DicomSequence(kept)
        item.NumberOfControlPoints = len(kept)
    return plan


def with_setup_beam(plan: Dataset) -> Dataset:
    """The plan plus a SETUP beam (no spots, no meterset), as planning systems add for imaging."""
    plan = _variant(plan, "setup")
    setup = copy.deepcopy(plan.IonBeamSequence[0])
    setup.BeamNumber = max(int(b.BeamNumber) for b in plan.IonBeamSequence) + 1
    setup.BeamName = "SETUP"
    setup.TreatmentDeliveryType = "SETUP"
    for cp in setup.IonControlPointSequence:
        for keyword in ("ScanSpotMetersetWeights", "ScanSpotPositionMap", "NumberOfScanSpotPositions"):
            if keyword in cp:
                delattr(cp, keyword)
    plan.IonBeamSequence.append(setup)
    return plan


def photon_plan(case: PhantomCase | Dataset) -> Dataset:
    """The case's plan turned into a photon RT Plan (BeamSequence, RadiationType PHOTON)."""
    plan = _variant(_plan(case), "photon")
    plan.SOPClassUID = sop.RT_PLAN
    plan.file_meta.MediaStorageSOPClassUID = sop.RT_PLAN
    item = Dataset()
    item.BeamNumber, item.BeamName, item.RadiationType, item.BeamType = 1, "AP", "PHOTON", "STATIC"
    plan.BeamSequence = DicomSequence([item])
    del plan.IonBeamSequence
    return plan


def plan_without_spots(case: PhantomCase | Dataset) -> Dataset:
    """The case's plan with every spot weight set to zero."""
    plan = _variant(_plan(case), "no-spots")
    for item in plan.IonBeamSequence:
        for cp in item.IonControlPointSequence:
            weights = cp.ScanSpotMetersetWeights
            cp.ScanSpotMetersetWeights = 0.0 if isinstance(weights, float) else [0.0] * len(weights)
    return plan


def plan_with_negative_mu(case: PhantomCase | Dataset) -> Dataset:
    """The case's plan with a negative BeamMeterset in its fraction group."""
    plan = _variant(_plan(case), "negative-mu")
    for reference in plan.FractionGroupSequence[0].ReferencedBeamSequence:
        reference.BeamMeterset = -abs(float(reference.BeamMeterset))
    return plan


def plan_with_many_beams(case: PhantomCase | Dataset, count: int = 2000) -> Dataset:
    """The case's plan with its first beam repeated `count` times (numbers 1..count)."""
    plan = _variant(_plan(case), f"beams-{count}")
    first, reference = plan.IonBeamSequence[0], plan.FractionGroupSequence[0].ReferencedBeamSequence[0]
    beams, references = [], []
    for number in range(1, count + 1):
        b, r = copy.deepcopy(first), copy.deepcopy(reference)
        b.BeamNumber = r.ReferencedBeamNumber = number
        beams.append(b)
        references.append(r)
    plan.IonBeamSequence = DicomSequence(beams)
    plan.FractionGroupSequence[0].ReferencedBeamSequence = DicomSequence(references)
    plan.FractionGroupSequence[0].NumberOfBeams = count
    return plan


def beam_differences(found: Sequence[IonBeam], expected: Sequence[IonBeam]) -> list[str]:
    """What differs between two beam lists, field by field and spot by spot (exact comparison)."""
    if len(found) != len(expected):
        return [f"{len(found)} beams, expected {len(expected)}"]
    differences = []
    for a, b in zip(found, expected):
        for name in ("number", "name", "gantry_angle_deg", "couch_angle_deg", "isocenter_mm", "meterset_mu",
                     "radiation_type", "scan_mode", "beam_type", "treatment_machine", "snout_position_mm",
                     "range_shifters"):
            if getattr(a, name) != getattr(b, name):
                differences.append(f"beam {b.number} {name}: {getattr(a, name)!r} != {getattr(b, name)!r}")
        if len(a.layers) != len(b.layers):
            differences.append(f"beam {b.number}: {len(a.layers)} layers, expected {len(b.layers)}")
            continue
        for index, (la, lb) in enumerate(zip(a.layers, b.layers)):
            for name in ("nominal_energy_mev", "spot_tune_id", "number_of_paintings", "range_shifter_in"):
                if getattr(la, name) != getattr(lb, name):
                    differences.append(f"beam {b.number} layer {index} {name}: {getattr(la, name)!r} != "
                                       f"{getattr(lb, name)!r}")
            for name in ("spot_x_mm", "spot_y_mm", "spot_mu"):
                if not np.array_equal(np.asarray(getattr(la, name), dtype=float),
                                      np.asarray(getattr(lb, name), dtype=float)):
                    differences.append(f"beam {b.number} layer {index} {name}: {getattr(la, name)} != "
                                       f"{getattr(lb, name)}")
    return differences


def _plan(source: PhantomCase | Dataset) -> Dataset:
    return source.plan if isinstance(source, PhantomCase) else source


def _variant(plan: Dataset, tag: str) -> Dataset:
    """A deep copy with its own SOPInstanceUID, so Orthanc keeps both."""
    variant = copy.deepcopy(plan)
    uid = derive_uid(str(plan.SOPInstanceUID), tag)
    variant.SOPInstanceUID = uid
    variant.file_meta.MediaStorageSOPInstanceUID = uid
    return variant

"""Synthetic CT / RTSTRUCT / RTPLAN for tests: the one fixture module (dicompyler-core's idea).

Everything is built by the `build_*` functions of `orthanc_rt.dicom` (directly or through
`orthanc_rt.ops.phantom`); tests derive variants here instead of building
DICOM themselves. The plan variants reproduce the forms commercial planning
systems export, which the reader must all accept:

- "raystation": a pair of control points per layer, weights on the first,
  zeros on the second (what `build_ion_plan` writes);
- "eclipse": the same pairs with the weights on the second control point;
- "single-cp": one control point per layer, then one closing control point.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ImplicitVRLittleEndian

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.ct import build_ct_series
from orthanc_rt.dicom.dose import build_rtdose
from orthanc_rt.dicom.ion_plan import build_ion_plan
from orthanc_rt.dicom.models import (
    CtVolume,
    DoseGrid,
    EnergyLayer,
    IonBeam,
    PatientStudy,
    PhotonBeam,
    RangeShifter,
    SrMeasurement,
)
from orthanc_rt.dicom.rtstruct import RoiSpec, build_rtstruct
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.dicom.sr import build_measurement_report
from orthanc_rt.dicom.uids import derive_uid
from orthanc_rt.ops.phantom import (
    CASE_DATETIME,
    PhantomCase,
    case_study,
    case_uid,
    water_phantom_case,
)

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
    plan = instance_variant(plan, "eclipse")
    for item in plan.IonBeamSequence:
        cps = item.IonControlPointSequence
        for first, second in zip(cps[0::2], cps[1::2]):
            first.ScanSpotMetersetWeights, second.ScanSpotMetersetWeights = (
                second.ScanSpotMetersetWeights, first.ScanSpotMetersetWeights)
    return plan


def one_control_point_per_layer(plan: Dataset) -> Dataset:
    """Drop the zero-weight second control point of every layer but the last, which closes the beam."""
    plan = instance_variant(plan, "single-cp")
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
    plan = instance_variant(plan, "setup")
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
    plan = instance_variant(_plan(case), "photon")
    plan.SOPClassUID = sop.RT_PLAN
    plan.file_meta.MediaStorageSOPClassUID = sop.RT_PLAN
    item = Dataset()
    item.BeamNumber, item.BeamName, item.RadiationType, item.BeamType = 1, "AP", "PHOTON", "STATIC"
    plan.BeamSequence = DicomSequence([item])
    del plan.IonBeamSequence
    return plan


def plan_without_spots(case: PhantomCase | Dataset) -> Dataset:
    """The case's plan with every spot weight set to zero."""
    plan = instance_variant(_plan(case), "no-spots")
    for item in plan.IonBeamSequence:
        for cp in item.IonControlPointSequence:
            weights = cp.ScanSpotMetersetWeights
            cp.ScanSpotMetersetWeights = 0.0 if isinstance(weights, float) else [0.0] * len(weights)
    return plan


def plan_with_negative_mu(case: PhantomCase | Dataset) -> Dataset:
    """The case's plan with a negative BeamMeterset in its fraction group."""
    plan = instance_variant(_plan(case), "negative-mu")
    for reference in plan.FractionGroupSequence[0].ReferencedBeamSequence:
        reference.BeamMeterset = -abs(float(reference.BeamMeterset))
    return plan


def plan_without_ct_references(case: PhantomCase | Dataset) -> Dataset:
    """The case's plan without FrameOfReferenceUID and ReferencedStructureSetSequence: no CT can match it."""
    plan = instance_variant(_plan(case), "no-ct-references")
    del plan.FrameOfReferenceUID
    del plan.ReferencedStructureSetSequence
    return plan


def plan_with_isocentre_shifted(case: PhantomCase | Dataset, shift_mm: tuple[float, float, float]) -> Dataset:
    """The case's plan with every beam's IsocenterPosition moved by `shift_mm` (x, y, z)."""
    plan = instance_variant(_plan(case), f"isocentre-{shift_mm}")
    for beam in plan.IonBeamSequence:
        for cp in beam.IonControlPointSequence:
            if "IsocenterPosition" in cp:
                cp.IsocenterPosition = [float(v) + d for v, d in zip(cp.IsocenterPosition, shift_mm)]
    return plan


def plan_with_many_beams(case: PhantomCase | Dataset, count: int = 2000) -> Dataset:
    """The case's plan with its first beam repeated `count` times (numbers 1..count)."""
    plan = instance_variant(_plan(case), f"beams-{count}")
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


def instance_variant(ds: Dataset, tag: str) -> Dataset:
    """A deep copy with its own SOPInstanceUID, so Orthanc keeps both."""
    variant = copy.deepcopy(ds)
    uid = derive_uid(str(ds.SOPInstanceUID), tag)
    variant.SOPInstanceUID = uid
    variant.file_meta.MediaStorageSOPInstanceUID = uid
    return variant


# --- dose-volume analysis cases ----------------------------------------------------------------------------

@dataclass
class DvhCase:
    """CT + RTSTRUCT + an analytic RTDOSE on a grid of its own (other spacing, frames between CT slices)."""

    study: PatientStudy
    ct: list[Dataset]
    rtstruct: Dataset
    rtdose: Dataset
    roi_names: list[str]


def dvh_case(name: str = "dvh", *, dose_spacing_mm: tuple[float, float, float] = (2.5, 2.5, 3.0),
             dose_peak_gy: float = 60.0) -> DvhCase:
    """Spheres, a shell (inner contours = holes) and a small cube in a 2 mm CT; a smooth dose.

    The dose is a Gaussian (sigma 30 mm, `dose_peak_gy` at (5, -5, 0) mm) plus a
    lateral gradient, on a grid whose voxel centres and frames do not
    coincide with the CT's, so the analysis must interpolate between frames.
    """
    study = case_study(f"dvh-{name}", patient_name="ORTHANC-RT^DVH")
    shape, spacing = (40, 60, 60), 2.0  # z, y, x
    origin = tuple(-(n - 1) * spacing / 2.0 for n in shape[::-1])  # x, y, z centred on 0
    z, y, x = (origin[2 - i] + spacing * np.arange(shape[i]) for i in range(3))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    r = lambda cx, cy, cz: np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2 + (zz - cz) ** 2)  # noqa: E731
    body = np.abs(xx) <= 55
    rois = [
        RoiSpec("Body", body & (np.abs(yy) <= 55) & (np.abs(zz) <= 37), "EXTERNAL"),
        RoiSpec("PTV", r(5, -5, 0) <= 16.0, "PTV"),
        RoiSpec("Shell", (r(0, 0, 0) <= 30.0) & (r(0, 0, 0) > 18.0), "ORGAN"),
        RoiSpec("Cord", (np.abs(xx - 20) <= 6) & (np.abs(yy - 30) <= 6), "ORGAN"),
        RoiSpec("Seed", (np.abs(xx + 30) <= 3) & (np.abs(yy + 30) <= 3) & (np.abs(zz - 10) <= 3), "ORGAN"),
    ]
    hu = np.where(body, 0.0, -1000.0) + np.where(rois[1].mask, 40.0, 0.0) + 20.0 * np.sin(xx / 7.0)
    ct_volume = CtVolume(hu=hu.astype(np.float32), origin_mm=origin, spacing_mm=(spacing,) * 3,
                         frame_of_reference_uid=study.frame_of_reference_uid)
    ct = build_ct_series(ct_volume, study, series_instance_uid=case_uid(f"dvh-{name}", "ct-series"),
                         created=CASE_DATETIME)
    rtstruct = build_rtstruct(ct, study, rois, series_instance_uid=case_uid(f"dvh-{name}", "rtstruct-series"),
                              sop_instance_uid=case_uid(f"dvh-{name}", "rtstruct"), label="DVH ROIs",
                              created=CASE_DATETIME)
    dose_origin = (origin[0] - 1.3, origin[1] - 0.7, origin[2] - 1.1)
    extent = [(n - 1) * spacing + 4.0 for n in shape[::-1]]
    counts = [int(np.ceil(e / s)) + 1 for e, s in zip(extent, dose_spacing_mm)]
    dz, dy, dx = (dose_origin[2 - i] + dose_spacing_mm[2 - i] * np.arange(counts[2 - i]) for i in range(3))
    gz, gy, gx = np.meshgrid(dz, dy, dx, indexing="ij")
    dose = dose_peak_gy * np.exp(-((gx - 5) ** 2 + (gy + 5) ** 2 + gz ** 2) / (2 * 30.0 ** 2)) \
        + 0.05 * (gx - dx[0])
    grid = DoseGrid(dose_gy=dose.astype(np.float32), origin_mm=dose_origin, spacing_mm=dose_spacing_mm,
                    frame_of_reference_uid=study.frame_of_reference_uid)
    rtdose = build_rtdose(grid, study, sop_instance_uid=case_uid(f"dvh-{name}", "rtdose"),
                          series_instance_uid=case_uid(f"dvh-{name}", "rtdose-series"),
                          referenced_plan_uid=case_uid(f"dvh-{name}", "plan"),
                          series_description="Analytic dose (test)", created=CASE_DATETIME)
    return DvhCase(study=study, ct=ct, rtstruct=rtstruct, rtdose=rtdose, roi_names=[roi.name for roi in rois])


@dataclass
class FusionCase:
    """A water box in air, its structure set and two analytic doses of Orthanc-RT (the newer one to be shown)."""

    phantom: PhantomCase
    rtdose: Dataset  # the newer: a Gaussian on the target, zero in the air and below 5 % of its peak
    older_rtdose: Dataset  # the older: a block of dose far from the target, series number 1
    foreign_rtdose: Dataset  # newer still, another system's (Manufacturer): the same block, series number 3
    difference_rtdose: Dataset  # the newest, Orthanc-RT's: a dose check's difference (DoseType ERROR), series 4
    hot_spot_mm: tuple[float, float, float]  # the older and the foreign doses' block centre
    peak_gy: float


def fusion_case(name: str = "fusion", *, peak_gy: float = 2.0) -> FusionCase:
    """CT + RTSTRUCT + three RTDOSEs as a clinical export sorts them: the doses' series numbers (1-3) before the CT's.

    The water (60 x 60 x 30 mm, 3 mm voxels) sits in 30 mm of air on every side; the dose grids cover the
    whole CT, air included, and hold zero there. The newer dose (created a day later) peaks at the target's
    centre (sigma 8 mm, cut to zero below 5 % of `peak_gy`); the older one is a uniform 3 Gy block 12 mm wide
    at `hot_spot_mm`, where the newer dose is zero. A third dose, created a day after the newer one by another
    system (its Manufacturer), holds the same block; the newest, a day later again, is a dose check's
    difference (DoseType ERROR) of Orthanc-RT: +-1 Gy in the block.
    """
    phantom = small_phantom_case(name, size_mm=(60.0, 60.0, 30.0), air_margin_mm=30.0, target_size_mm=12.0,
                                 target_depth_mm=20.0)
    for ds in phantom.ct:
        ds.SeriesNumber = 303
    volume = phantom.ct_volume
    shape = volume.hu.shape
    z, y, x = (volume.origin_mm[2 - i] + volume.spacing_mm[2 - i] * np.arange(shape[i]) for i in range(3))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    cx, cy, cz = phantom.target_center_mm
    gauss = peak_gy * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2 + (zz - cz) ** 2) / (2 * 8.0 ** 2))
    newer = np.where(phantom.external_mask & (gauss >= 0.05 * peak_gy), gauss, 0.0)
    hot = (cx, cy + 30.0, cz)
    block = (np.abs(xx - hot[0]) <= 6) & (np.abs(yy - hot[1]) <= 6) & (np.abs(zz - hot[2]) <= 6)
    older = np.where(phantom.external_mask & block, 3.0, 0.0)
    doses = []
    for tag, values, number, created in (("older", older, 1, CASE_DATETIME),
                                         ("newer", newer, 2, CASE_DATETIME.replace(day=2)),
                                         ("foreign", older, 3, CASE_DATETIME.replace(day=3))):
        grid = DoseGrid(dose_gy=values.astype(np.float32), origin_mm=volume.origin_mm, spacing_mm=volume.spacing_mm,
                        frame_of_reference_uid=phantom.study.frame_of_reference_uid)
        doses.append(build_rtdose(grid, phantom.study, sop_instance_uid=case_uid(name, f"{tag}-rtdose"),
                                  series_instance_uid=case_uid(name, f"{tag}-rtdose-series"),
                                  referenced_plan_uid=str(phantom.plan.SOPInstanceUID),
                                  series_description=f"{tag.capitalize()} dose (test)", series_number=number,
                                  created=created))
    doses[2].Manufacturer = "Another TPS"
    difference = DoseGrid(dose_gy=np.where(block & phantom.external_mask, np.sign(xx - hot[0] + 0.1), 0.0),
                          origin_mm=volume.origin_mm, spacing_mm=volume.spacing_mm,
                          frame_of_reference_uid=phantom.study.frame_of_reference_uid, dose_type="ERROR")
    doses.append(build_rtdose(difference, phantom.study, sop_instance_uid=case_uid(name, "difference-rtdose"),
                              series_instance_uid=case_uid(name, "difference-rtdose-series"),
                              referenced_plan_uid=str(phantom.plan.SOPInstanceUID),
                              series_description="Dose difference (test)", series_number=4,
                              created=CASE_DATETIME.replace(day=4)))
    return FusionCase(phantom=phantom, rtdose=doses[1], older_rtdose=doses[0], foreign_rtdose=doses[2],
                      difference_rtdose=doses[3], hot_spot_mm=hot, peak_gy=peak_gy)


def with_bad_rois(rtstruct: Dataset) -> Dataset:
    """The structure set plus an ROI with no contours and one whose only contour has two points."""
    ds = instance_variant(rtstruct, "bad-rois")
    next_number = max(int(r.ROINumber) for r in ds.StructureSetROISequence) + 1
    frame = str(ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID)
    for offset, name in enumerate(("Empty", "Degenerate")):
        number = next_number + offset
        item = Dataset()
        item.ROINumber, item.ROIName, item.ReferencedFrameOfReferenceUID = number, name, frame
        item.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(item)
        contour_item = Dataset()
        contour_item.ReferencedROINumber = number
        contour_item.ROIDisplayColor = [128, 128, 128]
        if name == "Degenerate":
            contour = copy.deepcopy(ds.ROIContourSequence[1].ContourSequence[0])
            contour.ContourData = list(contour.ContourData)[:6]
            contour.NumberOfContourPoints = 2
            contour_item.ContourSequence = DicomSequence([contour])
        ds.ROIContourSequence.append(contour_item)
    return ds


def with_roi_renamed(rtstruct: Dataset, old: str, new: str) -> Dataset:
    """A copy (own SOPInstanceUID) where ROI `old` is called `new`."""
    ds = instance_variant(rtstruct, f"renamed-{new}")
    for item in ds.StructureSetROISequence:
        if item.ROIName == old:
            item.ROIName = new
    return ds


def with_odd_contours(rtstruct: Dataset) -> Dataset:
    """The structure set plus, on its second ROI, an OPEN_PLANAR contour and a POINT (both to be dropped)."""
    ds = instance_variant(rtstruct, "odd-contours")
    contours = ds.ROIContourSequence[1].ContourSequence
    for kind, points in (("OPEN_PLANAR", 3), ("POINT", 1)):
        contour = copy.deepcopy(contours[0])
        contour.ContourGeometricType = kind
        contour.ContourData = list(contour.ContourData)[:3 * points]
        contour.NumberOfContourPoints = points
        contours.append(contour)
    return ds


def encoded(ds: Dataset, *, implicit_vr: bool = False, undefined_lengths: str = "none") -> bytes:
    """`ds` as Part 10 bytes in encodings senders use besides ours (explicit VR, defined lengths).

    `implicit_vr`: Implicit VR Little Endian. `undefined_lengths`: "nested" gives
    every sequence below the top level, and its items, undefined length
    (delimiters instead); "all" the top-level sequences too.
    """
    variant = copy.deepcopy(ds)
    if implicit_vr:
        variant.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian

    def undefine(dataset: Dataset, top: bool) -> None:
        for element in dataset:
            if element.VR != "SQ":
                continue
            if not top or undefined_lengths == "all":
                element.is_undefined_length = True
            for item in element.value:
                if not top or undefined_lengths == "all":
                    item.is_undefined_length_sequence_item = True
                undefine(item, False)

    if undefined_lengths != "none":
        undefine(variant, True)
    return to_bytes(variant)


def on_other_frame(ds: Dataset) -> Dataset:
    """A copy (own SOPInstanceUID) on another FrameOfReferenceUID."""
    variant = instance_variant(ds, "other-frame")
    variant.FrameOfReferenceUID = derive_uid(str(ds.SOPInstanceUID), "other-frame", "for")
    return variant


def measurement_report(case: DvhCase, *, name: str = "ohif") -> Dataset:
    """An OHIF-style TID 1500 report on the case's CT: a length on slice 20 and an area on slice 21 (frame 1)."""
    ct_series = str(case.ct[0].SeriesInstanceUID)
    measurements = [
        SrMeasurement(concept="Length", value=42.5, unit="mm", referenced_sop_class_uid=sop.CT_IMAGE,
                      referenced_sop_instance_uid=str(case.ct[20].SOPInstanceUID),
                      referenced_series_instance_uid=ct_series, graphic_data=(10.0, 10.0, 31.25, 10.0),
                      tracking_identifier="Cornerstone3DTools@^0.1.0:Length", finding="tumour width"),
        SrMeasurement(concept="Area", value=310.0, unit="mm2", referenced_sop_class_uid=sop.CT_IMAGE,
                      referenced_sop_instance_uid=str(case.ct[21].SOPInstanceUID),
                      referenced_series_instance_uid=ct_series, graphic_type="POLYGON",
                      graphic_data=(5.0, 5.0, 20.0, 5.0, 20.0, 25.0, 5.0, 5.0), frame_number=1,
                      tracking_identifier="Cornerstone3DTools@^0.1.0:PlanarFreehandROI"),
    ]
    return build_measurement_report(case.study, measurements, sop_instance_uid=case_uid(name, "sr"),
                                    series_instance_uid=case_uid(name, "sr-series"), created=CASE_DATETIME)


def read_simple_fantom(folder: Path, *, downsample: int = 1):
    """The OpenTPS SimpleFantomWithStruct test case: (CtVolume, {ROI name: mask [z, y, x]}).

    Its CT slices carry an empty FrameOfReferenceUID (0020,0052), which
    `read_ct_series` rightly refuses; we substitute one derived from the
    series UID, in memory (the files are left as they are). Its RTSTRUCT is
    found by SOP class, as its Modality wrongly says RTDOSE. The RTSTRUCT's
    contours are rasterised on the CT grid by OpenTPS (voxel centres inside the
    polygons). `downsample` > 1 averages HU over blocks of that many voxels per
    axis (and keeps a voxel in a mask when its block's centre voxel is in it).
    """
    import pydicom
    from opentps.core.data.images import CTImage
    from opentps.core.io.dicomIO import readDicomStruct

    from orthanc_rt.dicom.ct import read_ct_series
    from orthanc_rt.dicom.models import CtVolume

    paths = sorted(folder.glob("*.dcm"))
    datasets = [pydicom.dcmread(p) for p in paths]
    slices = [ds for ds in datasets if ds.SOPClassUID == sop.CT_IMAGE]
    # By SOP class: this RTSTRUCT's Modality (0008,0060) says RTDOSE.
    struct_path = next(p for p, ds in zip(paths, datasets) if ds.SOPClassUID == sop.RT_STRUCTURE_SET)
    frame = derive_uid("simple-fantom", str(slices[0].SeriesInstanceUID), "frame")
    for ds in slices:
        if not str(ds.get("FrameOfReferenceUID", "")):
            ds.FrameOfReferenceUID = frame
    ct = read_ct_series(slices)
    nz, ny, nx = ct.shape_zyx
    reference = CTImage(imageArray=np.zeros((nx, ny, nz), dtype=np.float32), origin=ct.origin_mm,
                        spacing=ct.spacing_mm)
    masks = {}
    for contour in readDicomStruct(str(struct_path)).contours:
        mask = contour.getBinaryMask(origin=reference.origin, gridSize=reference.gridSize, spacing=reference.spacing)
        masks[contour.name] = np.ascontiguousarray(mask.imageArray.transpose(2, 1, 0))
    if downsample > 1:
        k = int(downsample)
        cz, cy, cx = (n // k * k for n in ct.shape_zyx)
        hu = np.asarray(ct.hu, dtype=np.float32)[:cz, :cy, :cx]
        hu = hu.reshape(cz // k, k, cy // k, k, cx // k, k).mean(axis=(1, 3, 5))
        origin = tuple(o + (k - 1) * s / 2.0 for o, s in zip(ct.origin_mm, ct.spacing_mm))
        ct = CtVolume(hu=hu, origin_mm=origin, spacing_mm=tuple(s * k for s in ct.spacing_mm),
                      frame_of_reference_uid=ct.frame_of_reference_uid, series_instance_uid=ct.series_instance_uid,
                      study_instance_uid=ct.study_instance_uid)
        masks = {name: m[:cz, :cy, :cx][k // 2::k, k // 2::k, k // 2::k] for name, m in masks.items()}
    return ct, masks


def photon_beam(number: int = 1, *, gantry: float = 0.0, spacing_mm: float = 5.0, seed: int = 0,
                shape: tuple[int, int] = (5, 8), offset_mm: tuple[float, float] = (0.0, 0.0)) -> PhotonBeam:
    """A PhotonBeam built in code: a `shape` (rows along Y, columns along X) bixel grid of random weights.

    About a third of the bixels get no weight, so rows have gaps and the MLC
    needs several apertures per row; weights are exact in float64.
    """
    rng = np.random.default_rng(seed)
    rows, columns = shape
    y, x = np.meshgrid((np.arange(rows) - rows // 2) * spacing_mm + offset_mm[1],
                       (np.arange(columns) - columns // 2) * spacing_mm + offset_mm[0], indexing="ij")
    weights = np.round(rng.uniform(0.0, 30.0, shape), 3)
    weights[weights < 10.0] = 0.0
    return PhotonBeam(number=number, name=f"B{number}", gantry_angle_deg=gantry, couch_angle_deg=0.0,
                      isocenter_mm=(1.0, -2.0, 3.0), beamlet_x_mm=x.ravel(), beamlet_y_mm=y.ravel(),
                      beamlet_weight=weights.ravel(), beamlet_size_mm=(spacing_mm, spacing_mm),
                      treatment_machine="Generic")


def with_referenced_dose(plan: Dataset, dose: Dataset) -> Dataset:
    """A copy (own SOPInstanceUID) of the plan naming `dose` in its ReferencedDoseSequence, as a TPS exports it."""
    variant = instance_variant(plan, f"with-dose-{dose.SOPInstanceUID}")
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop.RT_DOSE, dose.SOPInstanceUID
    variant.ReferencedDoseSequence = DicomSequence([item])
    return variant


def tps_dose_of(plan: Dataset, dose: Dataset, *, manufacturer: str = "RaySearch Laboratories",
                summation: str = "PLAN", beam_number: int | None = None, name: str = "tps") -> Dataset:
    """A copy of `dose` (own SOPInstanceUID) as another system exports it with `plan`: the plan's patient, study
    and frame of reference, ReferencedRTPlanSequence naming the plan (and the beam, for a BEAM dose)."""
    variant = instance_variant(dose, f"{name}-{plan.SOPInstanceUID}-{summation}-{beam_number}")
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        setattr(variant, keyword, getattr(plan, keyword))
    variant.SeriesInstanceUID = derive_uid("tests", "tps-dose-series", str(variant.SOPInstanceUID))
    variant.Manufacturer, variant.DoseSummationType = manufacturer, summation
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = plan.SOPClassUID, plan.SOPInstanceUID
    if beam_number is not None:
        beam, group = Dataset(), Dataset()
        beam.ReferencedBeamNumber = beam_number
        group.ReferencedFractionGroupNumber = 1
        group.ReferencedBeamSequence = DicomSequence([beam])
        item.ReferencedFractionGroupSequence = DicomSequence([group])
    variant.ReferencedRTPlanSequence = DicomSequence([item])
    return variant


def with_sr_template(report: Dataset, template: str) -> Dataset:
    """A copy (own SOPInstanceUID) of an SR whose ContentTemplateSequence names another TID."""
    variant = instance_variant(report, f"tid-{template}")
    variant.ContentTemplateSequence[0].TemplateIdentifier = template
    return variant


@dataclass
class TriggerCase:
    """What arrives at the trigger rules: a DVH case (CT, RTSTRUCT, RTDOSE), a report on it, plans of a phantom."""

    dvh: DvhCase
    report: Dataset  # TID 1500 SR on the DVH case's CT
    ion_plan: Dataset
    photon_plan: Dataset
    plan_with_dose: Dataset  # the ion plan naming the DVH case's RTDOSE (ReferencedDoseSequence)


def trigger_case(name: str = "triggers") -> TriggerCase:
    dvh = dvh_case(name)
    phantom = small_phantom_case(name)
    return TriggerCase(dvh=dvh, report=measurement_report(dvh, name=name), ion_plan=phantom.plan,
                       photon_plan=photon_plan(phantom), plan_with_dose=with_referenced_dose(phantom.plan, dvh.rtdose))


def scenario_doses() -> list[np.ndarray]:
    """Three doses of a robustness evaluation on a 4 x 4 x 4 grid: nominal (10 Gy in the central 2 x 2 x 2 voxels,
    0 around), cold (0.9 x) and hot (1.05 x)."""
    base = np.zeros((4, 4, 4))
    base[1:3, 1:3, 1:3] = 10.0
    return [base, base * 0.9, base * 1.05]

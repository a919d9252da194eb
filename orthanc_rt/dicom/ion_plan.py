"""Reading RT Ion Plans as planning systems (RayStation, Eclipse, OpenTPS...) export them.

OpenTPS 2.0.0's `readDicomPlan` loses the beams of such plans, so this reader
is ours. What it relies on (DICOM PS3.3 C.8.8.25, RT Ion Beams):

- MU of a spot = ScanSpotMetersetWeights[i] × BeamMeterset / FinalCumulativeMetersetWeight,
  BeamMeterset from FractionGroupSequence > ReferencedBeamSequence (one fraction).
- An energy layer is usually a pair of control points whose second carries
  zero weights; some systems put the weights on the second. Consecutive
  control points of one NominalBeamEnergy form one layer; zero-weight spots
  are dropped.
- Type 1C attributes (NominalBeamEnergy, GantryAngle, PatientSupportAngle,
  IsocenterPosition, SnoutPosition) appear on the first control point and
  whenever they change: they are carried forward.
- A single-spot layer stores its weight as a number and its position as two
  numbers, not lists.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.errors import DicomInputError
from orthanc_rt.dicom.models import EnergyLayer, IonBeam, IonPlan, RangeShifter

MAX_BEAMS = 50  # more is not a treatment plan
ENERGY_LIMITS_MEV = (0.0, 400.0)
_SUPPORTED_SCAN_MODES = ("MODULATED", "MODULATED_SPEC")
_SUPPORTED_POSITIONS = ("HFS", "")  # the dose engine places CT and beams as head-first supine


def read_ion_plan(ds: Dataset) -> IonPlan:
    """Validate and read an RT Ion Plan; raises DicomInputError naming what is wrong."""
    _check_kind(ds)
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
        if not ds.get(keyword):
            raise DicomInputError(f"RT Ion Plan: {keyword} is missing")
    fractions, metersets = _fraction_group(ds)
    _check_patient_position(ds)
    beams_ds = list(ds.get("IonBeamSequence", []))
    if len(beams_ds) > MAX_BEAMS:
        raise DicomInputError(f"RT Ion Plan: {len(beams_ds)} beams in IonBeamSequence; at most {MAX_BEAMS} are accepted")
    beams = [_read_beam(b, metersets) for b in beams_ds if b.get("TreatmentDeliveryType", "TREATMENT") == "TREATMENT"]
    if not beams:
        raise DicomInputError("RT Ion Plan: IonBeamSequence holds no treatment beam")
    refs = ds.get("ReferencedStructureSetSequence", [])
    return IonPlan(
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        study_instance_uid=str(ds.StudyInstanceUID),
        frame_of_reference_uid=str(ds.FrameOfReferenceUID),
        patient_id=str(ds.get("PatientID", "")),
        label=str(ds.get("RTPlanLabel", "")),
        name=str(ds.get("RTPlanName", "")),
        fractions_planned=fractions,
        beams=beams,
        referenced_structure_set_uid=str(refs[0].ReferencedSOPInstanceUID) if refs else None,
    )


def _check_kind(ds: Dataset) -> None:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == sop.RT_PLAN or ("BeamSequence" in ds and "IonBeamSequence" not in ds):
        raise DicomInputError(
            "photon/electron plans are not supported: this is an RT Plan (BeamSequence); "
            "the proton-dose workflow expects an RT Ion Plan with RadiationType PROTON")
    if sop_class != sop.RT_ION_PLAN:
        raise DicomInputError(f"not an RT Ion Plan: SOPClassUID is {sop.name_of(sop_class)}")


def _fraction_group(ds: Dataset) -> tuple[int, dict[int, float]]:
    groups = ds.get("FractionGroupSequence", [])
    if not groups:
        raise DicomInputError("RT Ion Plan: FractionGroupSequence (300A,0070) is missing")
    group = groups[0]
    fractions = group.get("NumberOfFractionsPlanned")
    if fractions is None or int(fractions) < 1:
        raise DicomInputError(f"RT Ion Plan: NumberOfFractionsPlanned (300A,0078) must be ≥ 1, got {fractions}")
    metersets: dict[int, float] = {}
    for ref in group.get("ReferencedBeamSequence", []):
        if ref.get("BeamMeterset") is not None:
            metersets[int(ref.ReferencedBeamNumber)] = float(ref.BeamMeterset)
    return int(fractions), metersets


def _check_patient_position(ds: Dataset) -> None:
    for setup in ds.get("PatientSetupSequence", []):
        position = str(setup.get("PatientPosition", ""))
        if position not in _SUPPORTED_POSITIONS:
            raise DicomInputError(f"RT Ion Plan: PatientPosition {position} is not supported yet; "
                                  "doses are computed for head-first supine (HFS) plans only")


def _read_beam(b: Dataset, metersets: dict[int, float]) -> IonBeam:
    number = int(b.get("BeamNumber", 0))
    name = str(b.get("BeamName", ""))
    where = f"beam {number} ({name})" if name else f"beam {number}"
    radiation = str(b.get("RadiationType", ""))
    if radiation != "PROTON":
        raise DicomInputError(f"{where}: RadiationType {radiation or 'missing'} is not supported; "
                              "only PROTON beams can be computed")
    scan_mode = str(b.get("ScanMode", ""))
    if scan_mode not in _SUPPORTED_SCAN_MODES:
        raise DicomInputError(f"{where}: ScanMode {scan_mode or 'missing'} is not supported; "
                              "only pencil-beam scanning (MODULATED) plans can be computed")
    if number not in metersets:
        raise DicomInputError(f"{where}: no BeamMeterset for this beam in FractionGroupSequence > "
                              "ReferencedBeamSequence")
    meterset = metersets[number]
    if meterset < 0:
        raise DicomInputError(f"{where}: BeamMeterset is negative ({meterset})")
    final = float(b.get("FinalCumulativeMetersetWeight") or 0.0)
    if final <= 0:
        raise DicomInputError(f"{where}: FinalCumulativeMetersetWeight must be > 0, got {final}")
    shifters = [RangeShifter(number=int(r.get("RangeShifterNumber", 0)), identifier=str(r.get("RangeShifterID", "")),
                             type=str(r.get("RangeShifterType", "BINARY")))
                for r in b.get("RangeShifterSequence", [])]
    layers, first = _read_layers(b, where, mu_per_weight=meterset / final, shifters=shifters)
    if not layers:
        raise DicomInputError(f"{where}: no spot with a positive meterset weight")
    return IonBeam(
        number=number,
        name=name,
        gantry_angle_deg=float(first.get("GantryAngle", 0.0)),
        couch_angle_deg=float(first.get("PatientSupportAngle", 0.0)),
        isocenter_mm=_xyz(first.get("IsocenterPosition"), where),
        layers=layers,
        meterset_mu=meterset,
        radiation_type=radiation,
        scan_mode=scan_mode,
        beam_type=str(b.get("BeamType", "STATIC")),
        treatment_machine=str(b.get("TreatmentMachineName", "")),
        snout_position_mm=float(first.SnoutPosition) if first.get("SnoutPosition") is not None else None,
        range_shifters=shifters,
    )


def _read_layers(b: Dataset, where: str, *, mu_per_weight: float,
                 shifters: list[RangeShifter]) -> tuple[list[EnergyLayer], Dataset]:
    cps = list(b.get("IonControlPointSequence", []))
    if not cps:
        raise DicomInputError(f"{where}: IonControlPointSequence is empty")
    layers: list[EnergyLayer] = []
    energy: float | None = None
    rs_in = False
    previous_energy: float | None = None
    for i, cp in enumerate(cps):
        if cp.get("NominalBeamEnergy") is not None:
            energy = float(cp.NominalBeamEnergy)
        if energy is None:
            raise DicomInputError(f"{where}: control point {i} has no NominalBeamEnergy (none before it either)")
        if not ENERGY_LIMITS_MEV[0] < energy <= ENERGY_LIMITS_MEV[1]:
            raise DicomInputError(f"{where}: control point {i}: NominalBeamEnergy {energy} MeV is outside "
                                  f"({ENERGY_LIMITS_MEV[0]:g}, {ENERGY_LIMITS_MEV[1]:g}] MeV")
        for setting in cp.get("RangeShifterSettingsSequence", []):
            rs_in = str(setting.get("RangeShifterSetting", "OUT")) == "IN"
            _update_shifter(shifters, setting)
        weights = _floats(cp.get("ScanSpotMetersetWeights"))
        if not weights:
            previous_energy = energy
            continue
        positions = _floats(cp.get("ScanSpotPositionMap"))
        if len(positions) != 2 * len(weights):
            raise DicomInputError(f"{where}: control point {i}: ScanSpotPositionMap has {len(positions)} values "
                                  f"for {len(weights)} ScanSpotMetersetWeights (expected {2 * len(weights)})")
        w = np.asarray(weights, dtype=float)
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise DicomInputError(f"{where}: control point {i}: negative or non-finite ScanSpotMetersetWeights")
        xy = np.asarray(positions, dtype=float).reshape(-1, 2)
        keep = w > 0
        if not np.any(keep):
            previous_energy = energy
            continue
        x, y, mu = xy[keep, 0], xy[keep, 1], w[keep] * mu_per_weight
        if layers and previous_energy == energy and layers[-1].nominal_energy_mev == energy:
            last = layers[-1]
            last.spot_x_mm = np.concatenate([last.spot_x_mm, x])
            last.spot_y_mm = np.concatenate([last.spot_y_mm, y])
            last.spot_mu = np.concatenate([last.spot_mu, mu])
        else:
            layers.append(EnergyLayer(
                nominal_energy_mev=energy, spot_x_mm=x, spot_y_mm=y, spot_mu=mu,
                spot_tune_id=str(cp.get("ScanSpotTuneID", "")),
                number_of_paintings=int(cp.get("NumberOfPaintings", 1) or 1),
                range_shifter_in=rs_in,
            ))
        previous_energy = energy
    return layers, cps[0]


def _update_shifter(shifters: list[RangeShifter], setting: Dataset) -> None:
    number = int(setting.get("ReferencedRangeShifterNumber", 0))
    for shifter in shifters:
        if shifter.number == number:
            if setting.get("RangeShifterWaterEquivalentThickness") is not None:
                shifter.water_equivalent_thickness_mm = float(setting.RangeShifterWaterEquivalentThickness)
            if setting.get("IsocenterToRangeShifterDistance") is not None:
                shifter.isocenter_to_range_shifter_distance_mm = float(setting.IsocenterToRangeShifterDistance)


def _floats(value: Any) -> list[float]:
    """pydicom gives a number for one value and a MultiValue for several."""
    if value is None:
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]


def _xyz(value: Any, where: str) -> tuple[float, float, float]:
    values = _floats(value)
    if len(values) != 3:
        raise DicomInputError(f"{where}: IsocenterPosition (300A,012C) must hold 3 values on the first control point")
    return (values[0], values[1], values[2])

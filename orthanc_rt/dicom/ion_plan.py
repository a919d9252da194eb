"""RT Ion Plans (proton PBS): reading them as planning systems export them into `IonPlan`, and building them.

Read with pydicom, not OpenTPS' `readDicomPlan` (it loses the beams of ion
plans, docs/physics.md). What the reader accepts from commercial exports:

- A layer written as a pair of control points, the second with zero weights,
  or with the weights on the second, or one control point per layer:
  consecutive control points with the same energy (and tune ID, paintings and
  range shifter settings) are one `EnergyLayer`; zero-weight spots are dropped.
- A one-spot layer, whose ScanSpotMetersetWeights pydicom gives as a number.
- Attributes that DICOM carries forward from earlier control points
  (energy, angles, isocentre, snout, tune ID, paintings, range shifter settings).

MU of a spot (one fraction) = weight x BeamMeterset / FinalCumulativeMetersetWeight,
BeamMeterset from the first fraction group's ReferencedBeamSequence.
Beams whose TreatmentDeliveryType is not TREATMENT (setup beams) are skipped.
Everything a dose computation cannot trust is refused up front with a
DicomInputError naming the beam, control point and attribute.

`build_ion_plan` writes the first of those forms (a pair of control points
per layer, weights on the first), as commercial planning systems do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from orthanc_rt.dicom import sop
from orthanc_rt.dicom._common import (
    check_beam_numbers,
    check_isocenter,
    check_plan_header,
    check_text,
    ds_value,
    ds_values,
    plan_dataset,
    seq_item,
)
from orthanc_rt.dicom.attributes import described, floats, is_present, number, required
from orthanc_rt.dicom.models import EnergyLayer, IonBeam, IonPlan, PatientStudy, RangeShifter
from orthanc_rt.errors import DicomInputError

MAX_BEAMS = 50
MAX_ENERGY_MEV = 400.0
MODULATED_SCAN_MODES = ("MODULATED", "MODULATED_SPEC")  # MODULATED_SPEC only adds a nominal spot size
# Weights must add up to FinalCumulativeMetersetWeight: a larger mismatch means spots counted twice
# (e.g. the same weights on both control points of a pair) or a broken export.
_CUMULATIVE_TOLERANCE = 1e-3
_ANGLE_TOLERANCE_DEG = 1e-3
_POSITION_TOLERANCE_MM = 1e-3
# Our beams carry no source distance (the beam model has it); this is the usual order of magnitude.
_VIRTUAL_SOURCE_AXIS_DISTANCES_MM = (2000.0, 2000.0)
_DEFAULT_TUNE_ID = "NOMINAL"  # ScanSpotTuneID is Type 1: written when a layer has none


def read_ion_plan(ds: Dataset) -> IonPlan:
    """The treatment beams of an RT Ion Plan, spot by spot, with MU per fraction."""
    where = f"plan {ds.get('SOPInstanceUID', '(no SOPInstanceUID)')}"
    _require_ion_plan(ds, where)
    _require_head_first_supine(ds, where)
    fractions, metersets = _fraction_group(ds, where)
    items = _beam_items(ds, where)
    beams = [_read_beam(item, metersets, where) for item in items if _is_treatment(item)]
    if not beams:
        raise DicomInputError(f"{where}: {described('IonBeamSequence')} has no TREATMENT beam "
                              f"({len(items)} setup or other non-treatment beam(s) only)")
    numbers = [beam.number for beam in beams]
    if len(set(numbers)) != len(numbers):
        raise DicomInputError(f"{where}: {described('BeamNumber')} values repeat: {numbers}")
    references = ds.get("ReferencedStructureSetSequence") or []
    return IonPlan(
        sop_instance_uid=str(required(ds, "SOPInstanceUID", where)),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        label=str(ds.get("RTPlanLabel", "")),
        fractions_planned=fractions,
        beams=beams,
        referenced_structure_set_uid=str(references[0].ReferencedSOPInstanceUID) if references else None,
        name=str(ds.get("RTPlanName", "")),
    )


def summarize_plan(plan: IonPlan) -> dict[str, Any]:
    """What a job record keeps about a plan (JSON-ready)."""
    return {
        "sop_instance_uid": plan.sop_instance_uid,
        "label": plan.label,
        "fractions": plan.fractions_planned,
        "beams": len(plan.beams),
        "spots": plan.spot_count,
        "layers": sum(len(beam.layers) for beam in plan.beams),
        "energies_mev": plan.energies_mev,
        "total_mu_per_fraction": round(sum(beam.meterset_mu for beam in plan.beams), 6),
        "beam_details": [
            {
                "number": beam.number,
                "name": beam.name,
                "gantry_angle_deg": beam.gantry_angle_deg,
                "couch_angle_deg": beam.couch_angle_deg,
                "layers": len(beam.layers),
                "spots": beam.spot_count,
                "mu_per_fraction": round(beam.meterset_mu, 6),
                "energy_range_mev": [min(layer.nominal_energy_mev for layer in beam.layers),
                                     max(layer.nominal_energy_mev for layer in beam.layers)],
                "range_shifters": [shifter.identifier for shifter in beam.range_shifters],
            }
            for beam in plan.beams
        ],
    }


def _require_ion_plan(ds: Dataset, where: str) -> None:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == sop.RT_PLAN or (not sop_class and "BeamSequence" in ds):
        kinds = sorted({str(beam.get("RadiationType", "?")) for beam in ds.get("BeamSequence") or []})
        raise DicomInputError(
            f"photon/electron plans are not supported: {where} is {sop.describe(sop.RT_PLAN)} with "
            f"{described('RadiationType')} {', '.join(kinds) or 'unknown'}; expected RT Ion Plan with "
            "RadiationType PROTON")
    if sop_class and sop_class != sop.RT_ION_PLAN:
        raise DicomInputError(f"{where}: is {sop.describe(sop_class)}; expected {sop.describe(sop.RT_ION_PLAN)}")


def _require_head_first_supine(ds: Dataset, where: str) -> None:
    """Beam directions are computed for HFS (as OpenTPS does): another position would turn the beams around."""
    for setup in ds.get("PatientSetupSequence") or []:
        position = str(setup.get("PatientPosition") or "HFS").upper()
        if position != "HFS":
            raise DicomInputError(f"{where}: {described('PatientSetupSequence')} gives {described('PatientPosition')} "
                                  f"{position}; only head-first supine (HFS) plans are supported")


def _fraction_group(ds: Dataset, where: str) -> tuple[int, dict[int, Any]]:
    """NumberOfFractionsPlanned and each beam's BeamMeterset (None when absent) in the first fraction group."""
    groups = required(ds, "FractionGroupSequence", where)
    group = groups[0]
    here = f"{where} {described('FractionGroupSequence')}[0]"
    fractions = number(group, "NumberOfFractionsPlanned", here)
    if fractions < 1 or fractions != int(fractions):
        raise DicomInputError(f"{here}: {described('NumberOfFractionsPlanned')} is {fractions:g}; "
                              "expected a whole number of at least 1")
    metersets: dict[int, Any] = {}
    for reference in group.get("ReferencedBeamSequence") or []:
        beam_number = int(required(reference, "ReferencedBeamNumber", here))
        metersets[beam_number] = reference.get("BeamMeterset")
    return int(fractions), metersets


def _beam_items(ds: Dataset, where: str) -> list[Dataset]:
    items = list(ds.get("IonBeamSequence") or [])
    if not items:
        raise DicomInputError(f"{where}: {described('IonBeamSequence')} is missing or empty: the plan has no beams")
    if len(items) > MAX_BEAMS:
        raise DicomInputError(f"{where}: {len(items)} beams in {described('IonBeamSequence')}; more than "
                              f"{MAX_BEAMS} is not a plausible plan")
    return items


def _is_treatment(item: Dataset) -> bool:
    # Type 2: an empty value means the default, TREATMENT.
    return str(item.get("TreatmentDeliveryType") or "TREATMENT").upper() == "TREATMENT"


def _read_beam(item: Dataset, metersets: dict[int, Any], plan_where: str) -> IonBeam:
    beam_number = int(required(item, "BeamNumber", f"{plan_where} beam"))
    name = str(item.get("BeamName", ""))
    where = f"{plan_where} beam {beam_number}" + (f" ({name})" if name else "")
    radiation = str(required(item, "RadiationType", where)).upper()
    if radiation in ("PHOTON", "ELECTRON"):
        raise DicomInputError(f"photon/electron plans are not supported: {where} has {described('RadiationType')} "
                              f"{radiation}; expected RT Ion Plan with RadiationType PROTON")
    if radiation != "PROTON":
        raise DicomInputError(f"{where}: {described('RadiationType')} is {radiation}; only PROTON beams are supported")
    scan_mode = str(required(item, "ScanMode", where)).upper()
    if scan_mode not in MODULATED_SCAN_MODES:
        raise DicomInputError(f"{where}: {described('ScanMode')} is {scan_mode}; only pencil-beam scanning "
                              "(MODULATED) is supported, not passive scattering or uniform scanning")
    meterset = _beam_meterset(metersets, beam_number, where)
    final_weight = number(item, "FinalCumulativeMetersetWeight", where)
    if final_weight <= 0:
        raise DicomInputError(f"{where}: {described('FinalCumulativeMetersetWeight')} is {final_weight:g}; "
                              "it must be positive")
    shifters = _range_shifters(item, where)
    control_points = required(item, "IonControlPointSequence", where)
    walk = _ControlPointWalk(where, {shifter.number: shifter for shifter in shifters})
    layers = walk.layers(control_points)
    total_weight = sum(float(np.sum(weights)) for weights in walk.weights)
    if total_weight <= 0:
        raise DicomInputError(f"{where}: no spot has a positive {described('ScanSpotMetersetWeights')}; "
                              "the beam delivers nothing")
    if abs(total_weight - final_weight) > _CUMULATIVE_TOLERANCE * final_weight:
        raise DicomInputError(f"{where}: the spot weights add up to {total_weight:g} but "
                              f"{described('FinalCumulativeMetersetWeight')} is {final_weight:g}")
    mu_per_weight = meterset / final_weight
    for layer in layers:
        layer.spot_mu = layer.spot_mu * mu_per_weight
    return IonBeam(
        number=beam_number,
        name=name,
        gantry_angle_deg=walk.first["GantryAngle"],
        couch_angle_deg=walk.first["PatientSupportAngle"],
        isocenter_mm=walk.first["IsocenterPosition"],
        layers=layers,
        meterset_mu=meterset,
        radiation_type=radiation,
        scan_mode=scan_mode,
        beam_type=str(item.get("BeamType", "STATIC")),
        treatment_machine=str(item.get("TreatmentMachineName", "")),
        snout_position_mm=walk.first.get("SnoutPosition"),
        range_shifters=shifters,
    )


def _beam_meterset(metersets: dict[int, Any], beam_number: int, where: str) -> float:
    value = metersets.get(beam_number)
    if value is None or value == "":
        raise DicomInputError(f"{where}: {described('BeamMeterset')} is missing (no entry for beam {beam_number} "
                              f"in FractionGroupSequence[0] > {described('ReferencedBeamSequence')})")
    try:
        meterset = float(value)
    except (TypeError, ValueError):
        raise DicomInputError(f"{where}: {described('BeamMeterset')} is not a number: {value!r}") from None
    if not np.isfinite(meterset) or meterset < 0:
        raise DicomInputError(f"{where}: {described('BeamMeterset')} is {meterset:g}; negative MU are impossible")
    if meterset == 0:
        raise DicomInputError(f"{where}: {described('BeamMeterset')} is 0 MU; the beam delivers nothing")
    return meterset


def _range_shifters(item: Dataset, where: str) -> list[RangeShifter]:
    shifters = []
    for entry in item.get("RangeShifterSequence") or []:
        shifters.append(RangeShifter(
            number=int(required(entry, "RangeShifterNumber", where)),
            identifier=str(required(entry, "RangeShifterID", where)),
            type=str(entry.get("RangeShifterType") or "BINARY").upper(),
        ))
    return shifters


@dataclass
class _ControlPointWalk:
    """Walks a beam's control points, carrying attributes forward and merging control points into layers."""

    where: str
    shifters: dict[int, RangeShifter]
    first: dict[str, Any] = field(default_factory=dict)
    weights: list[np.ndarray] = field(default_factory=list)

    def layers(self, control_points: Any) -> list[EnergyLayer]:
        layers: list[EnergyLayer] = []
        previous_key = None
        for key, x, y, weights in self._spots(control_points):
            self.weights.append(weights)
            keep = weights > 0
            if key != previous_key:
                energy, tune, paintings, shifter_in = key
                layers.append(EnergyLayer(nominal_energy_mev=energy, spot_x_mm=np.empty(0), spot_y_mm=np.empty(0),
                                          spot_mu=np.empty(0), spot_tune_id=tune, number_of_paintings=paintings,
                                          range_shifter_in=shifter_in))
                previous_key = key
            layer = layers[-1]
            layer.spot_x_mm = np.concatenate([layer.spot_x_mm, x[keep]])
            layer.spot_y_mm = np.concatenate([layer.spot_y_mm, y[keep]])
            layer.spot_mu = np.concatenate([layer.spot_mu, weights[keep]])
        return [layer for layer in layers if layer.spot_mu.size]

    def _spots(self, control_points: Any) -> Iterator[tuple[tuple, np.ndarray, np.ndarray, np.ndarray]]:
        """Per control point: (energy, tune ID, paintings, range shifter in), spot x, y and weights."""
        state: dict[str, Any] = {"ScanSpotTuneID": "", "NumberOfPaintings": 1}
        shifter_in = {number: False for number in self.shifters}
        for index, cp in enumerate(control_points):
            here = f"{self.where} control point {index}"
            self._carry_geometry(cp, index, here)
            if is_present(cp, "NominalBeamEnergy"):
                state["energy"] = _energy(cp, here)
            elif index == 0:
                raise DicomInputError(f"{here}: {described('NominalBeamEnergy')} is missing")
            if is_present(cp, "ScanSpotTuneID"):
                state["ScanSpotTuneID"] = str(cp.ScanSpotTuneID)
            if is_present(cp, "NumberOfPaintings"):
                state["NumberOfPaintings"] = _paintings(cp, here)
            self._carry_range_shifters(cp, here, shifter_in)
            x, y, weights = _spot_map(cp, here)
            key = (state["energy"], state["ScanSpotTuneID"], state["NumberOfPaintings"], any(shifter_in.values()))
            yield key, x, y, weights

    def _carry_geometry(self, cp: Dataset, index: int, here: str) -> None:
        """Angles and isocentre are set on the first control point; later ones may only repeat them."""
        for keyword, tolerance in (("GantryAngle", _ANGLE_TOLERANCE_DEG), ("PatientSupportAngle", _ANGLE_TOLERANCE_DEG),
                                   ("IsocenterPosition", _POSITION_TOLERANCE_MM)):
            if not is_present(cp, keyword):
                if index == 0:
                    raise DicomInputError(f"{here}: {described(keyword)} is missing")
                continue
            value = floats(cp, keyword, here)
            expected = 3 if keyword == "IsocenterPosition" else 1
            if value.size != expected:
                raise DicomInputError(f"{here}: {described(keyword)} should hold {expected} value(s), not {value.size}")
            found = tuple(float(v) for v in value) if expected == 3 else float(value[0])
            if index == 0:
                self.first[keyword] = found
            elif not np.allclose(found, self.first[keyword], atol=tolerance):
                raise DicomInputError(f"{here}: {described(keyword)} changes within the beam ({self.first[keyword]} "
                                      f"to {found}); arcs and moving isocentres are not supported")
        if index == 0 and is_present(cp, "SnoutPosition"):
            self.first["SnoutPosition"] = number(cp, "SnoutPosition", here)

    def _carry_range_shifters(self, cp: Dataset, here: str, shifter_in: dict[int, bool]) -> None:
        for setting in cp.get("RangeShifterSettingsSequence") or []:
            referenced = int(required(setting, "ReferencedRangeShifterNumber", here))
            shifter = self.shifters.get(referenced)
            if shifter is None:
                raise DicomInputError(f"{here}: {described('ReferencedRangeShifterNumber')} {referenced} is not in "
                                      f"the beam's {described('RangeShifterSequence')}")
            position = str(required(setting, "RangeShifterSetting", here)).strip().upper()
            if position not in ("IN", "OUT"):
                raise DicomInputError(f"{here}: {described('RangeShifterSetting')} is {position!r}; expected IN or OUT")
            shifter_in[referenced] = position == "IN"
            # The model keeps one thickness and distance per shifter: the first the plan gives.
            for keyword, name in (("RangeShifterWaterEquivalentThickness", "water_equivalent_thickness_mm"),
                                  ("IsocenterToRangeShifterDistance", "isocenter_to_range_shifter_distance_mm")):
                if getattr(shifter, name) is None and is_present(setting, keyword):
                    setattr(shifter, name, number(setting, keyword, here))


def _energy(cp: Dataset, here: str) -> float:
    energy = number(cp, "NominalBeamEnergy", here)
    if not 0 < energy <= MAX_ENERGY_MEV:
        raise DicomInputError(f"{here}: {described('NominalBeamEnergy')} is {energy:g} MeV; proton energies must be "
                              f"above 0 and at most {MAX_ENERGY_MEV:g} MeV")
    return energy


def _paintings(cp: Dataset, here: str) -> int:
    paintings = number(cp, "NumberOfPaintings", here)
    if paintings < 1 or paintings != int(paintings):
        raise DicomInputError(f"{here}: {described('NumberOfPaintings')} is {paintings:g}; "
                              "expected a whole number >= 1")
    return int(paintings)


def _spot_map(cp: Dataset, here: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spot x, y (mm at the isocentre plane) and weights of one control point; empty when it has none."""
    if not is_present(cp, "ScanSpotMetersetWeights"):
        empty = np.empty(0)
        return empty, empty, empty
    weights = floats(cp, "ScanSpotMetersetWeights", here)
    positions = floats(cp, "ScanSpotPositionMap", here)
    if positions.size != 2 * weights.size:
        raise DicomInputError(f"{here}: {weights.size} {described('ScanSpotMetersetWeights')} but "
                              f"{positions.size} {described('ScanSpotPositionMap')} values (expected x, y per spot: "
                              f"{2 * weights.size})")
    if is_present(cp, "NumberOfScanSpotPositions") and int(cp.NumberOfScanSpotPositions) != weights.size:
        raise DicomInputError(f"{here}: {described('NumberOfScanSpotPositions')} is {int(cp.NumberOfScanSpotPositions)}"
                              f" but there are {weights.size} weights")
    if np.any(weights < 0):
        raise DicomInputError(f"{here}: negative {described('ScanSpotMetersetWeights')} "
                              f"(smallest {weights.min():g}); negative MU are impossible")
    return positions[0::2], positions[1::2], weights


# --- building ---------------------------------------------------------------------------------------------

def build_ion_plan(study: PatientStudy, beams: Sequence[IonBeam], *, sop_instance_uid: str,
                   series_instance_uid: str, label: str, fractions_planned: int,
                   referenced_structure_set_uid: str | None = None, referenced_dose_uid: str | None = None,
                   plan_name: str = "", series_description: str = "Proton plan (Orthanc-RT)", series_number: int = 3,
                   treatment_machine: str = "", created: datetime | None = None) -> Dataset:
    """An RT Ion Plan (proton PBS) written as commercial planning systems write one.

    Each layer is a pair of control points: the first carries the spots and
    their weights, the second repeats the spot map with zero weights; a
    one-spot layer's weight is a number, not a list. Spot weights are the
    spots' MU (float32, as ScanSpotMetersetWeights is FL), so
    FinalCumulativeMetersetWeight is the beam's MU and BeamMeterset is
    `beam.meterset_mu`. RTPlanGeometry is PATIENT when a structure set is
    referenced, TREATMENT_DEVICE otherwise (the standard ties the two).
    `referenced_dose_uid` names the plan's RTDOSE (ReferencedDoseSequence), so
    plan and dose point at each other. `treatment_machine` is used for beams
    that name none.
    """
    check_plan_header(study, sop_instance_uid, series_instance_uid, label, plan_name, series_description,
                      fractions_planned, referenced_structure_set_uid, referenced_dose_uid)
    _check_beams(beams)
    ds = plan_dataset(sop.RT_ION_PLAN, study, sop_instance_uid, series_instance_uid, label, plan_name,
                      series_description, series_number, fractions_planned, created,
                      [(beam.number, beam.meterset_mu) for beam in beams], referenced_structure_set_uid,
                      referenced_dose_uid)
    ds.IonBeamSequence = [_ion_beam(beam, beam.treatment_machine or treatment_machine) for beam in beams]
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def _check_beams(beams: Sequence[IonBeam]) -> None:
    check_beam_numbers([beam.number for beam in beams], "ion plan", MAX_BEAMS)
    for beam in beams:
        where = f"beam {beam.number}"
        if beam.radiation_type != "PROTON":
            raise DicomInputError(f"{where}: radiation_type {beam.radiation_type!r}; only PROTON is written")
        if beam.scan_mode not in MODULATED_SCAN_MODES:
            raise DicomInputError(f"{where}: scan_mode {beam.scan_mode!r}; only pencil-beam scanning "
                                  f"({', '.join(MODULATED_SCAN_MODES)}) is written")
        check_isocenter(beam.isocenter_mm, where)
        if not beam.layers:
            raise DicomInputError(f"{where}: no energy layers")
        if any(layer.range_shifter_in for layer in beam.layers) and not beam.range_shifters:
            raise DicomInputError(f"{where}: a layer has its range shifter in but the beam has no range shifter")
        for index, layer in enumerate(beam.layers, start=1):
            _check_layer(layer, f"{where} layer {index}")
        total = sum(layer.mu for layer in beam.layers)
        if total <= 0:
            raise DicomInputError(f"{where}: no spot has positive MU")
        if not np.isclose(beam.meterset_mu, total, rtol=1e-6, atol=0):
            raise DicomInputError(f"{where}: meterset_mu {beam.meterset_mu:g} is not the sum of its spots' MU "
                                  f"({total:g})")


def _check_layer(layer: EnergyLayer, where: str) -> None:
    if not 0 < layer.nominal_energy_mev <= MAX_ENERGY_MEV:
        raise DicomInputError(f"{where}: energy {layer.nominal_energy_mev:g} MeV is outside (0, {MAX_ENERGY_MEV:g}]")
    x, y, mu = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (layer.spot_x_mm, layer.spot_y_mm,
                                                                            layer.spot_mu))
    if not x.size == y.size == mu.size or x.size == 0:
        raise DicomInputError(f"{where}: {x.size} spot x, {y.size} spot y and {mu.size} MU values "
                              "(expected as many of each, at least one)")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(mu))):
        raise DicomInputError(f"{where}: spot positions and MU must be finite")
    if np.any(mu < 0):
        raise DicomInputError(f"{where}: negative spot MU ({mu.min():g})")
    if layer.number_of_paintings < 1:
        raise DicomInputError(f"{where}: number_of_paintings must be at least 1")
    check_text(layer.spot_tune_id, f"{where} spot_tune_id", 16)


def _ion_beam(beam: IonBeam, machine: str) -> Dataset:
    entry = seq_item(
        BeamNumber=beam.number, BeamName=(beam.name or f"B{beam.number}")[:64], BeamType=beam.beam_type,
        RadiationType="PROTON", TreatmentMachineName=machine, PrimaryDosimeterUnit="MU",
        TreatmentDeliveryType="TREATMENT", NumberOfWedges=0, NumberOfCompensators=0, NumberOfBoli=0,
        NumberOfBlocks=0, NumberOfRangeShifters=len(beam.range_shifters), NumberOfLateralSpreadingDevices=0,
        NumberOfRangeModulators=0, PatientSupportType="TABLE", ScanMode=beam.scan_mode,
        VirtualSourceAxisDistances=list(_VIRTUAL_SOURCE_AXIS_DISTANCES_MM), ReferencedPatientSetupNumber=1,
    )
    if beam.range_shifters:
        entry.RangeShifterSequence = [
            seq_item(RangeShifterNumber=shifter.number, RangeShifterID=shifter.identifier,
                     RangeShifterType=shifter.type)
            for shifter in beam.range_shifters]
    control_points = []
    cumulative = 0.0
    for layer in beam.layers:
        weights = np.atleast_1d(np.asarray(layer.spot_mu, dtype=np.float32))
        delivering = _control_point(beam, layer, len(control_points), cumulative, weights)
        if beam.range_shifters:  # stated where each layer starts; the closing control point inherits it
            delivering.RangeShifterSettingsSequence = [_range_shifter_setting(shifter, layer.range_shifter_in)
                                                       for shifter in beam.range_shifters]
        cumulative += float(np.sum(weights, dtype=np.float64))
        closing = _control_point(beam, layer, len(control_points) + 1, cumulative, np.zeros_like(weights))
        control_points += [delivering, closing]
    entry.FinalCumulativeMetersetWeight = ds_value(cumulative)
    entry.NumberOfControlPoints = len(control_points)
    entry.IonControlPointSequence = DicomSequence(control_points)
    return entry


def _control_point(beam: IonBeam, layer: EnergyLayer, index: int, cumulative: float,
                   weights: np.ndarray) -> Dataset:
    cp = seq_item(ControlPointIndex=index, CumulativeMetersetWeight=ds_value(cumulative),
                  NominalBeamEnergy=ds_value(layer.nominal_energy_mev))
    if index == 0:
        _set_beam_geometry(cp, beam)
    cp.ScanSpotTuneID = layer.spot_tune_id or _DEFAULT_TUNE_ID
    cp.NumberOfScanSpotPositions = int(weights.size)
    x = np.atleast_1d(np.asarray(layer.spot_x_mm, dtype=np.float32))
    y = np.atleast_1d(np.asarray(layer.spot_y_mm, dtype=np.float32))
    cp.ScanSpotPositionMap = [float(v) for v in np.column_stack([x, y]).ravel()]
    # A single value is written as a number, as planning systems do (VM 1 is not a list in DICOM).
    cp.ScanSpotMetersetWeights = float(weights[0]) if weights.size == 1 else [float(w) for w in weights]
    cp.NumberOfPaintings = int(layer.number_of_paintings)
    return cp


def _set_beam_geometry(cp: Dataset, beam: IonBeam) -> None:
    """What the first control point fixes for the whole (static) beam."""
    cp.GantryAngle = ds_value(beam.gantry_angle_deg)
    cp.GantryRotationDirection = "NONE"
    cp.BeamLimitingDeviceAngle = 0
    cp.BeamLimitingDeviceRotationDirection = "NONE"
    cp.PatientSupportAngle = ds_value(beam.couch_angle_deg)
    cp.PatientSupportRotationDirection = "NONE"
    cp.TableTopVerticalPosition = None
    cp.TableTopLongitudinalPosition = None
    cp.TableTopLateralPosition = None
    cp.TableTopPitchAngle = 0.0
    cp.TableTopPitchRotationDirection = "NONE"
    cp.TableTopRollAngle = 0.0
    cp.TableTopRollRotationDirection = "NONE"
    cp.IsocenterPosition = ds_values(beam.isocenter_mm)
    cp.SnoutPosition = None if beam.snout_position_mm is None else float(beam.snout_position_mm)


def _range_shifter_setting(shifter: RangeShifter, inserted: bool) -> Dataset:
    setting = seq_item(ReferencedRangeShifterNumber=shifter.number, RangeShifterSetting="IN" if inserted else "OUT")
    if shifter.isocenter_to_range_shifter_distance_mm is not None:
        setting.IsocenterToRangeShifterDistance = float(shifter.isocenter_to_range_shifter_distance_mm)
    if shifter.water_equivalent_thickness_mm is not None:
        setting.RangeShifterWaterEquivalentThickness = float(shifter.water_equivalent_thickness_mm)
    return setting

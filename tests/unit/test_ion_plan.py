"""read_ion_plan: the forms planning systems export, and every refusal with its message."""
from __future__ import annotations

import numpy as np
import pytest

from orthanc_rt.dicom import sop
from orthanc_rt.dicom.ion_plan import read_ion_plan, summarize_plan
from orthanc_rt.dicom.serialize import from_bytes, to_bytes
from orthanc_rt.errors import DicomInputError
from tests.support import cases as util


def _through_bytes(ds):
    return from_bytes(to_bytes(ds))


@pytest.mark.parametrize("style", util.PLAN_STYLES)
def test_each_commercial_form_reads_back_the_beams_it_was_built_from(style):
    beams = [util.beam(1), util.beam(2, energies=(120.0, 125.0, 130.0), gantry=90.0, couch=10.0)]
    plan = read_ion_plan(_through_bytes(util.commercial_style_plan(style, beams, fractions=3)))
    assert util.beam_differences(plan.beams, beams) == []
    assert plan.fractions_planned == 3
    assert plan.spot_count == 4 * 5


def test_plan_identity_and_references_are_read():
    ds = util.plan_of([util.beam()], name="identity", structure_set_uid="1.2.3.4")
    plan = read_ion_plan(ds)
    assert plan.sop_instance_uid == ds.SOPInstanceUID
    assert plan.series_instance_uid == ds.SeriesInstanceUID
    assert plan.study_instance_uid == util.STUDY.study_instance_uid
    assert plan.frame_of_reference_uid == util.STUDY.frame_of_reference_uid
    assert plan.patient_id == "UNIT" and plan.label == "identity"
    assert plan.referenced_structure_set_uid == "1.2.3.4"
    assert read_ion_plan(util.plan_of([util.beam()], name="no-ss")).referenced_structure_set_uid is None


def test_single_spot_layers_are_scalars_in_the_file_and_read_back():
    beams = [util.beam(spots_per_layer=1, energies=(90.0, 95.0, 100.0))]
    ds = _through_bytes(util.plan_of(beams, name="single"))
    cp = ds.IonBeamSequence[0].IonControlPointSequence[0]
    assert isinstance(cp.ScanSpotMetersetWeights, float)  # what pydicom gives for one value
    assert len(cp.ScanSpotPositionMap) == 2
    plan = read_ion_plan(ds)
    assert util.beam_differences(plan.beams, beams) == []
    assert [len(layer.spot_mu) for layer in plan.beams[0].layers] == [1, 1, 1]


def test_range_shifter_and_its_settings_per_layer():
    beam = util.beam(range_shifter=True, energies=(70.0, 75.0, 80.0))
    beam.layers[2].range_shifter_in = False
    plan = read_ion_plan(_through_bytes(util.plan_of([beam], name="rs")))
    read = plan.beams[0]
    assert util.beam_differences([read], [beam]) == []
    (shifter,) = read.range_shifters
    assert (shifter.number, shifter.identifier, shifter.type) == (1, "RS_7.5cm", "BINARY")
    assert shifter.water_equivalent_thickness_mm == 74.5
    assert shifter.isocenter_to_range_shifter_distance_mm == 300.0
    assert [layer.range_shifter_in for layer in read.layers] == [True, True, False]


def test_mu_is_weight_times_beam_meterset_over_final_weight():
    ds = util.plan_of([util.beam()], name="mu")
    # Weights normalised to 1 (as some systems write them) give the same MU.
    item = ds.IonBeamSequence[0]
    total = float(item.FinalCumulativeMetersetWeight)
    for cp in item.IonControlPointSequence:
        cp.ScanSpotMetersetWeights = [w / total for w in cp.ScanSpotMetersetWeights]
        cp.CumulativeMetersetWeight = float(cp.CumulativeMetersetWeight) / total
    item.FinalCumulativeMetersetWeight = 1.0
    ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset = 12.0  # twice the spots' 6 MU
    beam = read_ion_plan(ds).beams[0]
    assert beam.meterset_mu == 12.0
    np.testing.assert_allclose(beam.layers[0].spot_mu, [1.0] * 4, rtol=1e-6)
    np.testing.assert_allclose(beam.layers[1].spot_mu, [2.0] * 4, rtol=1e-6)
    assert sum(layer.mu for layer in beam.layers) == pytest.approx(12.0, rel=1e-6)


def test_zero_weight_spots_are_dropped():
    ds = util.plan_of([util.beam()], name="zeros")
    cp = ds.IonBeamSequence[0].IonControlPointSequence[0]
    cp.ScanSpotMetersetWeights = [0.5, 0.0, 0.5, 0.0]
    ds.IonBeamSequence[0].FinalCumulativeMetersetWeight = 5.0
    ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset = 5.0
    layer = read_ion_plan(ds).beams[0].layers[0]
    assert list(layer.spot_mu) == [0.5, 0.5]
    assert list(layer.spot_x_mm) == [-4.5, 1.5]


def test_attributes_are_carried_forward_from_earlier_control_points():
    ds = util.plan_of([util.beam(energies=(100.0, 110.0))], name="carry")
    cps = ds.IonBeamSequence[0].IonControlPointSequence
    for cp in cps[1::2]:  # the closing control point of each pair states nothing it need not
        for keyword in ("NominalBeamEnergy", "ScanSpotTuneID", "NumberOfPaintings"):
            delattr(cp, keyword)
    cps[0].NumberOfPaintings = 3
    cps[2].GantryAngle = 0.0  # a repeat of the same value is fine
    plan = read_ion_plan(ds)
    layers = plan.beams[0].layers
    assert [layer.nominal_energy_mev for layer in layers] == [100.0, 110.0]
    assert [layer.number_of_paintings for layer in layers] == [3, 1]
    assert plan.beams[0].snout_position_mm == 421.0


def test_setup_beams_are_ignored():
    ds = util.with_setup_beam(util.commercial_style_plan())
    assert len(ds.IonBeamSequence) == 3
    assert [beam.number for beam in read_ion_plan(ds).beams] == [1, 2]


def test_summary_for_job_records():
    summary = summarize_plan(read_ion_plan(util.commercial_style_plan(fractions=5)))
    assert summary["beams"] == 2 and summary["fractions"] == 5 and summary["spots"] == 20
    assert summary["layers"] == 5
    assert summary["energies_mev"] == [100.0, 110.0, 120.0, 125.0, 130.0]
    assert summary["total_mu_per_fraction"] == pytest.approx(6.0 + 12.0)
    assert [b["gantry_angle_deg"] for b in summary["beam_details"]] == [0.0, 90.0]
    assert summary["beam_details"][1]["energy_range_mev"] == [120.0, 130.0]


# --- refusals -----------------------------------------------------------------------------------------------

def _first_beam(ds):
    return ds.IonBeamSequence[0]


def _first_cp(ds):
    return ds.IonBeamSequence[0].IonControlPointSequence[0]


def _meterset(ds):
    return ds.FractionGroupSequence[0].ReferencedBeamSequence[0]


def _set(target, keyword, value):
    def change(ds):
        setattr(target(ds), keyword, value)
    return change


def _delete(target, keyword):
    def change(ds):
        delattr(target(ds), keyword)
    return change


def _many_beams(ds):
    for number in range(3, 52):
        ds.IonBeamSequence.append(ds.IonBeamSequence[0])


def _second_cp_gantry(ds):
    ds.IonBeamSequence[0].IonControlPointSequence[2].GantryAngle = 45.0


def _only_setup_beams(ds):
    for item in ds.IonBeamSequence:
        item.TreatmentDeliveryType = "SETUP"


def _unknown_range_shifter(ds):
    from pydicom.dataset import Dataset
    setting = Dataset()
    setting.ReferencedRangeShifterNumber = 7
    setting.RangeShifterSetting = "IN"
    _first_cp(ds).RangeShifterSettingsSequence = [setting]


REFUSALS = [
    ("ion beam with photons", _set(_first_beam, "RadiationType", "PHOTON"),
     r"photon/electron plans are not supported: .*beam 1 .*expected RT Ion Plan with RadiationType PROTON"),
    ("electrons", _set(_first_beam, "RadiationType", "ELECTRON"), r"photon/electron plans are not supported"),
    ("carbon ions", _set(_first_beam, "RadiationType", "ION"), r"beam 1 .*RadiationType \(300A,00C6\) is ION"),
    ("passive scattering", _set(_first_beam, "ScanMode", "NONE"),
     r"beam 1 .*ScanMode \(300A,0308\) is NONE; only pencil-beam scanning"),
    ("uniform scanning", _set(_first_beam, "ScanMode", "UNIFORM"), r"ScanMode \(300A,0308\) is UNIFORM"),
    ("no beams", lambda ds: setattr(ds, "IonBeamSequence", []), r"IonBeamSequence \(300A,03A2\) is missing or empty"),
    ("absurd beam count", _many_beams, r"51 beams .*more than 50"),
    ("only setup beams", _only_setup_beams, r"no TREATMENT beam"),
    ("negative weight", _set(_first_cp, "ScanSpotMetersetWeights", [0.5, -0.5, 0.5, 0.5]),
     r"beam 1 .*control point 0: negative ScanSpotMetersetWeights \(300A,0396\)"),
    ("negative MU", _set(_meterset, "BeamMeterset", -6.0), r"beam 1 .*BeamMeterset \(300A,0086\) is -6; negative MU"),
    ("zero MU", _set(_meterset, "BeamMeterset", 0.0), r"BeamMeterset \(300A,0086\) is 0 MU"),
    ("missing meterset", _delete(_meterset, "BeamMeterset"), r"beam 1 .*BeamMeterset \(300A,0086\) is missing"),
    ("final weight zero", _set(_first_beam, "FinalCumulativeMetersetWeight", 0.0),
     r"beam 1 .*FinalCumulativeMetersetWeight \(300A,010E\) is 0; it must be positive"),
    ("final weight missing", _delete(_first_beam, "FinalCumulativeMetersetWeight"),
     r"FinalCumulativeMetersetWeight \(300A,010E\) is missing"),
    ("weights counted twice", _set(_first_beam, "FinalCumulativeMetersetWeight", 3.0),
     r"beam 1 .*spot weights add up to 6 but FinalCumulativeMetersetWeight"),
    ("positions short", _set(_first_cp, "ScanSpotPositionMap", [0.0, 0.0, 1.0, 1.0]),
     r"control point 0: 4 ScanSpotMetersetWeights \(300A,0396\) but 4 ScanSpotPositionMap \(300A,0394\) values"),
    ("spot count", _set(_first_cp, "NumberOfScanSpotPositions", 5), r"NumberOfScanSpotPositions \(300A,0392\) is 5"),
    ("fractions missing", _delete(lambda ds: ds.FractionGroupSequence[0], "NumberOfFractionsPlanned"),
     r"NumberOfFractionsPlanned \(300A,0078\) is missing"),
    ("zero fractions", _set(lambda ds: ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", 0),
     r"NumberOfFractionsPlanned \(300A,0078\) is 0"),
    ("no fraction group", _delete(lambda ds: ds, "FractionGroupSequence"),
     r"FractionGroupSequence \(300A,0070\) is missing"),
    ("zero energy", _set(_first_cp, "NominalBeamEnergy", 0.0),
     r"beam 1 .*control point 0: NominalBeamEnergy \(300A,0114\) is 0 MeV"),
    ("absurd energy", _set(_first_cp, "NominalBeamEnergy", 450.0), r"NominalBeamEnergy \(300A,0114\) is 450 MeV"),
    ("no energy", _delete(_first_cp, "NominalBeamEnergy"),
     r"control point 0: NominalBeamEnergy \(300A,0114\) is missing"),
    ("no isocentre", _delete(_first_cp, "IsocenterPosition"), r"IsocenterPosition \(300A,012C\) is missing"),
    ("arc", _second_cp_gantry, r"control point 2: GantryAngle \(300A,011E\) changes within the beam"),
    ("unknown range shifter", _unknown_range_shifter, r"ReferencedRangeShifterNumber \(300C,0100\) 7 is not in"),
    ("repeated beam numbers", _set(lambda ds: ds.IonBeamSequence[1], "BeamNumber", 1), r"BeamNumber .* repeat"),
    ("feet first", _set(lambda ds: ds.PatientSetupSequence[0], "PatientPosition", "FFS"),
     r"PatientPosition \(0018,5100\) FFS; only head-first supine \(HFS\)"),
    ("not a plan", _set(lambda ds: ds, "SOPClassUID", sop.CT_IMAGE),
     r"is CT Image Storage .*expected RT Ion Plan Storage"),
]


@pytest.mark.parametrize("change, message", [(c, m) for _, c, m in REFUSALS], ids=[name for name, _, _ in REFUSALS])
def test_refusals_name_the_attribute_and_beam(change, message):
    ds = util.commercial_style_plan()
    change(ds)
    with pytest.raises(DicomInputError, match=message):
        read_ion_plan(ds)


def test_plan_without_spots_is_refused():
    with pytest.raises(DicomInputError, match=r"beam 1 .*no spot has a positive ScanSpotMetersetWeights"):
        read_ion_plan(util.plan_without_spots(util.commercial_style_plan()))


def test_photon_rt_plan_is_refused_with_the_expected_message():
    ds = util.photon_plan(util.commercial_style_plan())
    with pytest.raises(DicomInputError) as info:
        read_ion_plan(ds)
    message = str(info.value)
    assert message.startswith("photon/electron plans are not supported: ")
    assert "RT Plan Storage (1.2.840.10008.5.1.4.1.1.481.5)" in message and "PHOTON" in message
    assert message.endswith("expected RT Ion Plan with RadiationType PROTON")

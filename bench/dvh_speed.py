"""Benchmark 3, DVH speed: Orthanc-RT's analysis vs dicompyler-core 0.5.6 (the oracle), same RTSTRUCT + RTDOSE.

    PYTHONPATH=. python bench/dvh_speed.py [--repeat 7]

Prints the best time of each, the ratio (target: Orthanc-RT at least 10x
faster) and how far the metrics of the two agree. dicompyler-core runs in
.venv-oracle (scripts/install.sh --dev) as one long-lived process: the two
are timed in alternation, round after round, so a busy machine slows both
alike, and interpreter start-up is not counted against dicompyler-core.
Both CPU time (each process's own, what other load on the machine barely
changes: the ratio to trust on a shared machine) and wall time are shown.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One thread per side, so CPU time is one computation's work (neither gains from BLAS threads here).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orthanc_rt.analysis.dose_analysis import analyse  # noqa: E402
from orthanc_rt.dicom.serialize import from_bytes, to_bytes  # noqa: E402
from orthanc_rt.scheduling.params import AnalysisParams  # noqa: E402
from tests.support.cases import dvh_case  # noqa: E402
from tests.support.oracle import ORACLE_SCRIPT, oracle_python  # noqa: E402

# One round per line read: every ROI through get_dvh (files read again each time, as dicompyler-core does).
_ORACLE_TIMER = """
import sys, time
from dicompylercore import dicomparser, dvhcalc
rs, rd = sys.argv[1], sys.argv[2]
rois = list(dicomparser.DicomParser(rs).GetStructures())
for _ in sys.stdin:
    t, c = time.perf_counter(), time.process_time()
    for roi in rois:
        dvhcalc.get_dvh(rs, rd, roi)
    print(time.perf_counter() - t, time.process_time() - c, flush=True)
"""
# Our metric -> the oracle's key; all doses in Gy.
_COMPARED = {"Dmean": "mean_gy", "Dmax": "max_gy", "Dmin": "min_gy", "D95": "d95_gy", "D50": "d50_gy", "D2": "d2_gy"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7, help="rounds; the best time of each side counts")
    parser.add_argument("--dose-spacing", type=float, nargs=3, default=(2.5, 2.5, 3.0), metavar=("X", "Y", "Z"),
                        help="dose grid spacing in mm (finer: a larger grid)")
    args = parser.parse_args()
    case = dvh_case("bench", dose_spacing_mm=tuple(args.dose_spacing))
    folder = Path(tempfile.mkdtemp())
    struct_bytes, dose_bytes = to_bytes(case.rtstruct), to_bytes(case.rtdose)
    (folder / "rs.dcm").write_bytes(struct_bytes)
    (folder / "rd.dcm").write_bytes(dose_bytes)

    def ours_once() -> tuple[tuple[float, float], object]:
        started, cpu = time.perf_counter(), time.process_time()
        # From bytes, as the worker gets them from Orthanc (dicompyler-core reads its files each call too).
        result = analyse(from_bytes(dose_bytes), from_bytes(struct_bytes), None, AnalysisParams(), job_id="bench")
        return (time.perf_counter() - started, time.process_time() - cpu), result

    print(f"ROIs: {len(case.roi_names)}, dose grid {case.rtdose.Columns}x{case.rtdose.Rows}x"
          f"{case.rtdose.NumberOfFrames}")
    python = oracle_python()
    if python is None:
        best = min(ours_once()[0][0] for _ in range(args.repeat))
        print(f"orthanc-rt: {best * 1000:.1f} ms; no .venv-oracle for the comparison")
        return
    oracle = subprocess.Popen([python, "-c", _ORACLE_TIMER, str(folder / "rs.dcm"), str(folder / "rd.dcm")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ours, theirs = [], []
    try:
        for _ in range(args.repeat):
            elapsed, result = ours_once()
            ours.append(elapsed)
            oracle.stdin.write("go\n")
            oracle.stdin.flush()
            wall, cpu = oracle.stdout.readline().split()
            theirs.append((float(wall), float(cpu)))
    finally:
        oracle.stdin.close()
        oracle.wait(timeout=60)
    for i, clock in enumerate(("wall", "CPU")):
        mine, oracle_s = min(t[i] for t in ours), min(t[i] for t in theirs)
        print(f"{clock:4s} time, best of {args.repeat}: orthanc-rt (parse + DVH + metrics) {mine * 1000:.1f} ms, "
              f"dicompyler-core 0.5.6 get_dvh (all ROIs) {oracle_s * 1000:.1f} ms, ratio {oracle_s / mine:.1f}x "
              f"(target >= 10x)")
    agreement(result, python, folder)


def agreement(result, python: str, folder: Path) -> None:
    """The largest differences from dicompyler-core over the ROIs both analyse (ROIs of 5 cc or more)."""
    run = subprocess.run([python, str(ORACLE_SCRIPT), str(folder / "rs.dcm"), str(folder / "rd.dcm")],
                         capture_output=True, text=True, check=True)
    reference = json.loads(run.stdout)["rois"]
    ours = {(m.roi_name, m.metric): m.value for m in result.measurements}
    worst_dose = (0.0, "")
    worst_volume = (0.0, "")
    for name, ref in reference.items():
        if ref["volume_cc"] < 5.0:  # voxel counting is coarse below (analysis.SMALL_ROI_CC)
            continue
        for metric, key in _COMPARED.items():
            diff = abs(ours[(name, metric)] - ref[key]) / ref["max_gy"] * 100.0
            worst_dose = max(worst_dose, (diff, f"{name} {metric}: {ours[(name, metric)]:.3f} vs {ref[key]:.3f} Gy"))
        diff = abs(ours[(name, "volume")] - ref["volume_cc"]) / ref["volume_cc"] * 100.0
        worst_volume = max(worst_volume, (diff, f"{name}: {ours[(name, 'volume')]:.2f} vs {ref['volume_cc']:.2f} cc"))
    print(f"agreement with dicompyler-core (ROIs >= 5 cc): worst dose metric {worst_dose[0]:.2f} % of the ROI's "
          f"Dmax ({worst_dose[1]}); worst volume {worst_volume[0]:.2f} % ({worst_volume[1]})")


if __name__ == "__main__":
    main()

"""DVH speed: Orthanc-RT's analysis vs dicompyler-core 0.5.6 (the oracle), same RTSTRUCT + RTDOSE, one run.

    PYTHONPATH=. python bench/dvh_speed.py [--repeat 5]

Prints per-ROI and total times and the ratio. dicompyler-core runs in
.venv-oracle (scripts/install.sh --dev); its times are measured inside that
process, so interpreter start-up is not counted against it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orthanc_rt.analysis import analyse  # noqa: E402
from orthanc_rt.dicom.serialize import from_bytes, to_bytes  # noqa: E402
from orthanc_rt.params import AnalysisParams  # noqa: E402
from tests.unit.test_dvh import oracle_python  # noqa: E402
from tests.util import dvh_case  # noqa: E402

_ORACLE_TIMER = """
import sys, time, json
from dicompylercore import dicomparser, dvhcalc
rs, rd, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
rois = list(dicomparser.DicomParser(rs).GetStructures())
best = float('inf')
for _ in range(repeat):
    t = time.perf_counter()
    for roi in rois:
        dvhcalc.get_dvh(rs, rd, roi)
    best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "rois": len(rois)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dose-spacing", type=float, nargs=3, default=(2.5, 2.5, 3.0), metavar=("X", "Y", "Z"),
                        help="dose grid spacing in mm (finer: a larger grid)")
    args = parser.parse_args()
    case = dvh_case("bench", dose_spacing_mm=tuple(args.dose_spacing))
    folder = Path(tempfile.mkdtemp())
    struct_bytes, dose_bytes = to_bytes(case.rtstruct), to_bytes(case.rtdose)
    (folder / "rs.dcm").write_bytes(struct_bytes)
    (folder / "rd.dcm").write_bytes(dose_bytes)
    ours = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        # From bytes, as the worker gets them from Orthanc (dicompyler-core reads its files each call too).
        analyse(from_bytes(dose_bytes), from_bytes(struct_bytes), None, AnalysisParams(), job_id="bench")
        ours = min(ours, time.perf_counter() - started)
    python = oracle_python()
    if python is None:
        print(f"orthanc-rt: {ours * 1000:.1f} ms for {len(case.roi_names)} ROIs; no .venv-oracle for the comparison")
        return
    out = subprocess.run([python, "-c", _ORACLE_TIMER, str(folder / "rs.dcm"), str(folder / "rd.dcm"),
                          str(args.repeat)], capture_output=True, text=True, check=True)
    theirs = json.loads(out.stdout)["seconds"]
    print(f"ROIs: {len(case.roi_names)}, dose grid {case.rtdose.Columns}x{case.rtdose.Rows}x{case.rtdose.NumberOfFrames}")
    print(f"orthanc-rt (parse + DVH + metrics): {ours * 1000:.1f} ms")
    print(f"dicompyler-core 0.5.6 get_dvh, all ROIs:              {theirs * 1000:.1f} ms")
    print(f"ratio: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()

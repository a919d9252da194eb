"""The DVH oracle: dicompyler-core's dvhcalc on an RTSTRUCT + RTDOSE, printed as JSON.

Runs in its own virtualenv (.venv-oracle: dicompyler-core 0.5.6, pydicom 2.4,
numpy < 2; made by `scripts/install.sh --dev`) because dicompyler-core 0.5.6
does not import with pydicom 3. Usage: python dicompyler_dvh.py RTSTRUCT RTDOSE
"""
import json
import sys

import dicompylercore
import pydicom
from dicompylercore import dicomparser, dvhcalc


def main(rtstruct_path: str, rtdose_path: str) -> None:
    structures = dicomparser.DicomParser(rtstruct_path).GetStructures()
    out = {"oracle": f"dicompyler-core {dicompylercore.__version__}", "pydicom": pydicom.__version__, "rois": {}}
    for number, structure in structures.items():
        dvh = dvhcalc.get_dvh(rtstruct_path, rtdose_path, number)
        if dvh.volume == 0:
            continue
        out["rois"][structure["name"]] = {
            "number": number, "volume_cc": float(dvh.volume), "min_gy": float(dvh.min),
            "mean_gy": float(dvh.mean), "max_gy": float(dvh.max), "d95_gy": float(dvh.D95.value),
            "d50_gy": float(dvh.D50.value), "d2_gy": float(dvh.D2.value),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

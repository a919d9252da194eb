"""The DVH oracle (dicompyler-core in its own virtualenv, made by `scripts/install.sh --dev`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ORACLE_SCRIPT = REPO / "tests" / "oracle" / "dicompyler_dvh.py"


def oracle_python() -> str | None:
    for candidate in (os.environ.get("ORTHANC_RT_ORACLE_PYTHON"), REPO / ".venv-oracle" / "bin" / "python",
                      Path(sys.prefix).parent / ".venv-oracle" / "bin" / "python"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None

"""Repair what the opentps-core 2.0.0 wheel installs wrongly (docs/opentps-fixes.md).

The wheel ships MCsquare and the CCC photon engine without their run bit and the
MCsquare launcher scripts with CRLF line endings. Idempotent: run it after every
install.
"""
from __future__ import annotations

import importlib.util
import stat
from pathlib import Path

# The photon engine is photons/CCC_DoseEngine/CCC_DoseEngine (its sources sit beside it, named otherwise).
_EXECUTABLE_PREFIXES = ("MCsquare", "CCC_DoseEngine")


def fix(root: Path) -> list[Path]:
    changed: list[Path] = []
    for path in root.rglob("*"):
        if not path.is_file() or not path.name.startswith(_EXECUTABLE_PREFIXES):
            continue
        if path.suffix in (".bat", ".exe", ".dll", ".py"):
            continue
        data = path.read_bytes()
        if data.startswith(b"#!") and b"\r\n" in data:
            path.write_bytes(data.replace(b"\r\n", b"\n"))
            changed.append(path)
        mode = path.stat().st_mode
        if not mode & stat.S_IXUSR:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            changed.append(path)
    return changed


if __name__ == "__main__":
    # Located without importing opentps.core, which logs and creates ~/openTPS_workspace.
    spec = importlib.util.find_spec("opentps.core")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("opentps-core is not installed in this environment")
    root = Path(list(spec.submodule_search_locations)[0])
    changed = fix(root)
    print(f"[install] OpenTPS fixes: {len(set(changed))} file(s) changed under {root}")

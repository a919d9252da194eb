"""docs/architecture.md maps every concept to its module: every public module of the code is named there.

A module added without a line on the architecture page fails here, so the
page a newcomer reads first never falls behind the tree.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "architecture.md").read_text()


def _public_modules() -> list[Path]:
    found = []
    for package in ("orthanc_rt", "plugin", "worker"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO)
            if "migrations" in relative.parts or path.name.startswith("_") and path.name != "__main__.py":
                continue
            found.append(relative)
    return found


@pytest.mark.parametrize("module", _public_modules(), ids=str)
def test_every_public_module_is_on_the_architecture_page(module):
    folder = f"`{module.parent.as_posix()}/`"
    named = (f"`{module.as_posix()}`" in PAGE
             or re.search(rf"^\| {re.escape(folder)} \|.*`{re.escape(module.stem)}`", PAGE, re.M) is not None
             or re.search(rf"`{re.escape(module.parent.as_posix())}/<\w+>\.py`", PAGE) is not None
             and module.parent.name == "routes")
    assert named, f"{module} is not named in docs/architecture.md (its folder's row, or its own path)"

"""Debian's Chromium for the browser tests, and where their screenshots go."""
from __future__ import annotations

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def artifact(name: str) -> Path:
    """Where a test keeps a screenshot or page image for people to look at (the folder made on first use,
    whichever test runs first)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


CHROMIUM = Path("/usr/bin/chromium")


# Flags for a closed network and a root user (see the machine notes): no sandbox, no background traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

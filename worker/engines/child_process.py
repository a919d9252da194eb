"""What every dose engine the worker starts needs: die with the worker, explain how it ended, show its last words.

Engines run in the worker's process group (never `start_new_session`): RQ
cancels or times out a job by killing the work horse's process group, and
the engine must die with it.
"""
from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path
from typing import Callable

_PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 25


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A preexec_fn: SIGKILL the child when the worker dies, even by SIGKILL.

    The kernel sends the signal when the *thread* that forked exits, so the
    engine must be started from a thread that lives as long as the job (RQ's
    work horse runs jobs on its main thread).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the worker died between fork and prctl
            os._exit(1)
    return preexec


def describe_signal(returncode: int) -> str:
    """" (killed by SIGKILL)" for a process a signal ended, "" otherwise."""
    if returncode >= 0:
        return ""
    try:
        return f" (killed by {signal.Signals(-returncode).name})"
    except ValueError:
        return f" (killed by signal {-returncode})"


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last non-blank lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output captured)"
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(no output)"

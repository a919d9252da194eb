"""Image rendering off Orthanc's HTTP threads.

Orthanc's HTTP threads have small C stacks: matplotlib (and deep numpy/PIL
calls) crashed the whole server there. Renderers run on one thread of our
own, created with a large stack, and the route waits for the result.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_STACK_BYTES = 64 * 1024 * 1024
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def render(fn: Callable[..., T], *args: Any, timeout_s: float = 60, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` on the rendering thread and return its result."""
    global _executor
    with _lock:
        if _executor is None:
            previous = threading.stack_size(_STACK_BYTES)
            try:
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orthanc-rt-render")
                _executor.submit(lambda: None).result()  # the thread is created now, with the large stack
            finally:
                threading.stack_size(previous)
    return _executor.submit(fn, *args, **kwargs).result(timeout=timeout_s)

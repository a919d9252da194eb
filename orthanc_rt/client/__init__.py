"""Orthanc-RT's REST API (/rt) from outside: the typed client that scripts, the launcher's user commands,
the demo, the benchmarks and the integration tests use (docs/scripting.md).
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["api", "results"]

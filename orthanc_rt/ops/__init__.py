"""Running an installation: the launcher's commands, the process stack, the demo and its phantom, the viewer server,
and the Prometheus metrics operations watch it by.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["cli", "demo", "metrics", "phantom", "stack", "viewer"]

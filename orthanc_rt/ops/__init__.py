"""Running an installation: the launcher's commands, the process stack, the demo and its phantom, the viewer server.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["cli", "demo", "phantom", "stack", "viewer"]

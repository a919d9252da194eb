"""What each kind of job does, one module per kind, and the frame every job runs in.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["analysis", "dose", "frame", "plan", "progress", "sr"]

"""Pictures of doses: overlays on the CT, DVH plots, rendered off Orthanc's HTTP threads.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["check_report", "dlvh_plot", "dose_scene", "dvh_plot", "overlay", "render_thread"]

"""Dose analysis: DVHs and dose-volume metrics of ROIs, from contours or voxel masks.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["body", "dose_analysis", "dose_comparison", "dvh", "dvh_metrics", "gamma", "goals", "let", "rbe",
           "robustness", "roi_masks"]

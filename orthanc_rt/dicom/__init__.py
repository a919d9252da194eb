"""DICOM RT objects with pydicom: plain-data models, and per object family one module that reads and builds it."""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["attributes", "contours", "ct", "dose", "encapsulated_pdf", "geometry", "ion_plan", "leaf_sequencing",
           "models", "photon_plan", "raw_sequence", "rtstruct", "serialize", "sop", "sr", "uids"]

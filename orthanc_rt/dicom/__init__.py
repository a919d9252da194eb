"""DICOM RT objects: plain-data models, readers and builders (pydicom only)."""

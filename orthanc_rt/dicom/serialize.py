"""Datasets to and from bytes (Part 10 files), as they travel to and from Orthanc."""
from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def from_bytes(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))

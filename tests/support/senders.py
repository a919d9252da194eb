"""Sending DICOM the ways users do: REST upload, C-STORE (dcmtk storescu), STOW-RS."""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Sequence

import requests
from pydicom.dataset import Dataset

from orthanc_rt.dicom.serialize import to_bytes


def rest_upload(base: str, datasets: Sequence[Dataset], auth: tuple[str, str] | None = None) -> list[str]:
    ids = []
    for ds in datasets:
        r = requests.post(f"{base}/instances", data=to_bytes(ds), timeout=60, auth=auth)
        r.raise_for_status()
        ids.append(r.json()["ID"])
    return ids


def c_store(port: int, datasets: Sequence[Dataset], folder: Path, *, aet: str = "ORTHANC_RT",
            calling: str = "STORESCU") -> None:
    result = c_store_result(port, datasets, folder, aet=aet, calling=calling)
    if result.returncode != 0:
        raise AssertionError(f"storescu failed ({result.returncode}): {result.stderr[-2000:]}")


def c_store_result(port: int, datasets: Sequence[Dataset], folder: Path, *, aet: str = "ORTHANC_RT",
                   calling: str = "STORESCU") -> subprocess.CompletedProcess[str]:
    """storescu's run (not checked): `calling` is the AE title it claims."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(ds))
        files.append(str(path))
    # -R: propose exactly the SOP classes of the files (storescu's default list lacks RT Ion Plan).
    return dcmtk("storescu", port, ["-R", "-xs"], files, aet=aet, calling=calling)


def dcmtk(tool: str, port: int, options: Sequence[str] = (), operands: Sequence[str] = (), *, aet: str = "ORTHANC_RT",
          calling: str = "STORESCU", timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a dcmtk network tool (echoscu, findscu, movescu, storescu) against 127.0.0.1:port as AE `calling`."""
    return subprocess.run([tool, "-aet", calling, "-aec", aet, *options, "127.0.0.1", str(port), *operands],
                          capture_output=True, text=True, timeout=timeout_s)


def stow_rs(base: str, datasets: Sequence[Dataset]) -> dict:
    r = stow_rs_response(base, datasets)
    r.raise_for_status()
    return r.json()


def stow_rs_response(base: str, datasets: Sequence[Dataset], auth: tuple[str, str] | None = None) -> requests.Response:
    """POST the datasets to {base}/dicom-web/studies as one multipart STOW-RS request; the answer unchecked."""
    boundary = f"orthanc-rt-{uuid.uuid4().hex}"
    parts = []
    for ds in datasets:
        parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + to_bytes(ds) + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return requests.post(f"{base}/dicom-web/studies", data=body, timeout=120, auth=auth, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})

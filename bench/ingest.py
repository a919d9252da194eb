"""Benchmark 1: ingest overhead of the plugin.

Stores the same CT series (N slices) into a plain Orthanc (DICOMweb only) and into
Orthanc with the Orthanc-RT plugin, by REST upload and by C-STORE (dcmtk storescu),
alternating rounds so machine noise hits both alike. Prints the median times and
the ratio plugin / plain (target ≤ 1.05). Each round deletes what it stored.

    .venv/bin/python -m bench.ingest [--slices 200] [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import requests

from bench._common import config, running, summary, timed
from orthanc_rt.dicom.serialize import to_bytes
from orthanc_rt.ops.phantom import water_phantom_case
from tests.support.senders import c_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    case = water_phantom_case("bench-ingest", size_mm=(100.0, 100.0, float(args.slices)), spacing_mm=1.0)
    ct = case.ct[: args.slices]
    payloads = [to_bytes(ds) for ds in ct]
    folder = Path(tempfile.mkdtemp(prefix="orthanc-rt-bench-files-"))

    results: dict[str, dict[str, list[float]]] = {"plain": {"rest": [], "cstore": []},
                                                  "plugin": {"rest": [], "cstore": []}}
    with running(config("plain"), plugin=False) as plain, running(config("plugin", stable_age_s=60)) as plugin:
        for _ in range(args.rounds):
            for name, cfg in (("plain", plain), ("plugin", plugin)):
                base = cfg.orthanc_url
                results[name]["rest"].append(timed(lambda: _rest(base, payloads)))
                _clear(base)
                results[name]["cstore"].append(timed(lambda: c_store(cfg.dicom_port, ct, folder)))
                _clear(base)
    print(f"Ingest of {len(ct)} CT slices ({sum(map(len, payloads)) / 1e6:.1f} MB), {args.rounds} rounds each")
    for route in ("rest", "cstore"):
        plain_t, plugin_t = results["plain"][route], results["plugin"][route]
        ratio = statistics.median(plugin_t) / statistics.median(plain_t)
        print(f"  {route:6s} plain  {summary(plain_t)}")
        print(f"  {route:6s} plugin {summary(plugin_t)}")
        print(f"  {route:6s} ratio plugin/plain = {ratio:.3f}  (target <= 1.05)")


def _rest(base: str, payloads: list[bytes]) -> None:
    with requests.Session() as http:
        for data in payloads:
            http.post(f"{base}/instances", data=data, timeout=60).raise_for_status()


def _clear(base: str) -> None:
    for patient in requests.get(f"{base}/patients", timeout=30).json():
        requests.delete(f"{base}/patients/{patient}", timeout=60)


if __name__ == "__main__":
    main()

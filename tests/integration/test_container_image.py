"""The container image (Dockerfile), built with podman as scripts/container-image.sh builds it, runs Orthanc-RT.

Where no Docker engine runs and the cgroups refuse to start containers (this machine), the image's file system is
run as a container engine would run it: a container is created (not started) and mounted (`podman mount`), and
Orthanc and a worker run in it with `chroot`, each in a mount namespace of its own with /proc, /dev and a data
volume, on the host's network (127.0.0.1, free ports). They talk as in docker-compose.yml: the worker reaches
Orthanc over HTTP, both share Redis (a private server) and PostgreSQL (a throw-away database on the host's
server), and nothing else (their data folders are different volumes). A small plan stored in Orthanc must come back
with its RTDOSE, computed by MCsquare inside the image.

Skipped only where podman is missing. The first build takes minutes (Debian packages, pinned wheels, OHIF); later
ones reuse podman's layer cache and the `debian:bookworm` base made by debootstrap, both kept on the machine.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
import requests

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from tests.support.cases import small_phantom_case
from tests.support.senders import rest_upload
from tests.support.services import free_port, postgres_database
from tests.support.stack import TEST_PRIMARIES, Client

pytestmark = [pytest.mark.integration, pytest.mark.physics, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
PODMAN = shutil.which("podman")
IMAGE = "localhost/orthanc-rt:test"
APP = "/opt/orthanc-rt"  # the image's WORKDIR
# The image's ENV (chroot does not apply it) and a clean environment: nothing of this host's Python leaks in.
IMAGE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
             "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}


def _podman(*args: str, timeout_s: float = 120) -> str:
    done = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout.strip()


def _build(log: Path) -> float:
    """scripts/container-image.sh, its output in `log`; returns its wall time in seconds."""
    start = time.monotonic()
    with log.open("a") as out:
        done = subprocess.run(["bash", str(PROJECT / "scripts" / "container-image.sh"), IMAGE.split("/", 1)[1]],
                              stdout=out, stderr=subprocess.STDOUT, timeout=1500)
    assert done.returncode == 0, f"the image build failed:\n{log.read_text(errors='replace')[-4000:]}"
    return time.monotonic() - start


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    if PODMAN is None:
        pytest.skip("podman is not installed (scripts/install.sh --dev installs it): no image can be built here")
    log = tmp_path_factory.mktemp("image") / "build.log"
    had_base = subprocess.run([PODMAN, "image", "exists", "debian:bookworm"]).returncode == 0
    first_s = _build(log)
    cached_s = _build(log)  # nothing changed: every layer from the cache
    size = int(_podman("image", "inspect", "--format", "{{.Size}}", IMAGE))
    base_lines = [line for line in log.read_text().splitlines() if "base debian:bookworm made in" in line]
    print(f"\n[image] base: {'kept from an earlier run' if had_base else base_lines[0]}; build {first_s:.0f} s, "
          f"again with every layer cached {cached_s:.0f} s; image {size / 1e9:.2f} GB")
    return IMAGE


@pytest.fixture
def rootfs(image) -> Iterator[Path]:
    """A container of the image, created (never started) and mounted: its file system, writable."""
    name = f"orthanc-rt-test-{os.getpid()}"
    _podman("create", "--name", name, image)
    try:
        yield Path(_podman("mount", name))
    finally:
        subprocess.run([PODMAN, "umount", name], capture_output=True)
        subprocess.run([PODMAN, "rm", "--force", name], capture_output=True)


def _in_image(root: Path, volume: Path, volume_at: str, argv: list[str], env: dict[str, str],
              log: Path) -> subprocess.Popen:
    """`argv` run in the image's file system (a mount namespace of its own: its mounts go with its last process);
    `volume` is mounted at `volume_at` as a container engine mounts a volume."""
    script = ('set -e; root="$1"; shift; mkdir -p "$root$VOLUME_AT"; mount -t proc proc "$root/proc"; '
              'mount --rbind /dev "$root/dev"; mount --bind "$VOLUME" "$root$VOLUME_AT"; '
              f'exec chroot "$root" /bin/sh -c \'cd {APP} && exec "$@"\' sh "$@"')  # in the image's WORKDIR
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root), *argv]
    with log.open("w") as out:
        return subprocess.Popen(command, env={**env, "VOLUME": str(volume), "VOLUME_AT": volume_at},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """The service and everything it started (Orthanc's plugin threads, a worker's MCsquare), like `docker stop`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def _until_healthy(client: Client, orthanc: subprocess.Popen, log: Path, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert orthanc.poll() is None, f"Orthanc exited ({orthanc.returncode}):\n{_tail(log)}"
        try:
            r = client.get("/rt/health")
            checks = r.json()["checks"] if r.status_code == 200 else {}
            if checks and all(checks[name]["ok"] for name in ("orthanc", "database", "redis", "workers")):
                return r.json()
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"/rt/health did not show a worker within {timeout_s} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def _get_when_up(url: str, log: Path, timeout_s: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return requests.get(url, timeout=30)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answers at {url}:\n{_tail(log)}") from None
            time.sleep(0.5)


@pytest.fixture
def backends(tmp_path) -> Iterator[tuple[str, str]]:
    """A Redis and a PostgreSQL database of this test's own, as the compose file's redis and postgres services:
    the session's stack (tests/integration/conftest.py) keeps its Redis database and its workers to itself."""
    for database_url in postgres_database():
        cfg = StackConfig(data_dir=tmp_path / "redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
        try:
            stack.ensure_redis(cfg)  # a private redis-server on a free port
            yield cfg.redis_url, database_url
        finally:
            stack.stop(cfg)


def test_image_runs_orthanc_and_a_worker_that_store_the_rtdose(rootfs, tmp_path, backends):
    redis_url, database_url = backends
    http_port, dicom_port, viewer_port = free_port(), free_port(), free_port()
    orthanc_data, worker_data = tmp_path / "orthanc-data", tmp_path / "worker-scratch"
    for volume in (orthanc_data, worker_data, tmp_path / "viewer"):
        volume.mkdir()
    # The administrator's own configuration: the image's template with few Monte Carlo primaries (a test dose).
    template = json.loads((rootfs / APP.lstrip("/") / "orthanc_config" / "orthanc.json").read_text())
    template["OrthancRT"]["AutoDose"]["Primaries"] = TEST_PRIMARIES
    (orthanc_data / "orthanc-template.json").write_text(json.dumps(template))
    common = {**IMAGE_ENV, "ORTHANC_RT_DATABASE_URL": database_url, "ORTHANC_RT_REDIS_URL": redis_url,
              "ORTHANC_RT_ORTHANC_URL": f"http://127.0.0.1:{http_port}"}
    services = []
    try:
        orthanc_log = tmp_path / "orthanc.log"
        services.append(_in_image(rootfs, orthanc_data, "/var/lib/orthanc-rt", ["./orthanc-rt", "run", "orthanc"], {
            **common, "ORTHANC_RT_DATA_DIR": "/var/lib/orthanc-rt", "ORTHANC_RT_HTTP_PORT": str(http_port),
            "ORTHANC_RT_DICOM_PORT": str(dicom_port), "ORTHANC_RT_STABLE_AGE": "2",
            "ORTHANC_RT_CONFIG_TEMPLATE": "/var/lib/orthanc-rt/orthanc-template.json"}, orthanc_log))
        services.append(_in_image(rootfs, worker_data, "/var/lib/orthanc-rt", ["./orthanc-rt", "run", "worker"], {
            **common, "ORTHANC_RT_DATA_DIR": "/var/lib/orthanc-rt", "ORTHANC_RT_MCSQUARE_THREADS": "1"},
            tmp_path / "worker.log"))
        # docker-compose.yml's viewer service: the image with another entry point.
        services.append(_in_image(rootfs, tmp_path / "viewer", "/var/lib/orthanc-rt", [
            ".venv/bin/python", "-m", "orthanc_rt.ops.viewer", "--bind", "127.0.0.1", "--port", str(viewer_port),
            "--orthanc", f"http://127.0.0.1:{http_port}"], IMAGE_ENV, tmp_path / "viewer.log"))
        client = Client(f"http://127.0.0.1:{http_port}")
        _until_healthy(client, services[0], orthanc_log)

        case = small_phantom_case("container")
        rest_upload(client.base, [*case.ct, case.rtstruct, case.plan])
        job = client.wait_job(lambda j: j["state"] in ("succeeded", "failed"), timeout_s=600,
                              study=case.study.study_instance_uid, kind="dose")
        assert job["state"] == "succeeded", f"{job['message']}\n{_tail(tmp_path / 'worker.log')}"

        doses = client.study_instances(case.study.study_instance_uid, "RTDOSE")
        assert len(doses) == 1, doses
        dose = pydicom.dcmread(io.BytesIO(client.get(f"/instances/{doses[0]}/file").content))
        assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == case.plan.SOPInstanceUID
        assert dose.pixel_array.max() * float(dose.DoseGridScaling) > 0

        # OHIF from the image, and the study through its DICOMweb pass-through to Orthanc.
        viewer = f"http://127.0.0.1:{viewer_port}"
        page = _get_when_up(viewer + "/", tmp_path / "viewer.log")
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:300]
        studies = requests.get(viewer + "/dicom-web/studies", timeout=30).json()
        assert [s["0020000D"]["Value"][0] for s in studies] == [case.study.study_instance_uid]
    finally:
        for service in reversed(services):
            _stop(service)

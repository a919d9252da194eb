"""A second host on this machine, for tests of what crosses hosts: a worker that shares nothing with the test
but the network services it is given.

`isolated_host()` makes a network namespace joined to this one by a veth pair on a /30 of the test network
10.213.0.0/16 (nothing else uses it): the namespace has its own loopback, so the host's 127.0.0.1 services are
out of its reach; `forward()` opens one of them to it on the host's veth address (tests.support.tcp_proxy).
`IsolatedHost.spawn()` runs a command there in a mount namespace of its own, with empty tmpfs over /tmp and
over any folders it names: the parent's temporary files and work folders are not visible to it, only the
code and the virtualenv (read as a deployed worker reads its own installation). Needs root and iproute2
(`ip netns`), util-linux (`unshare`); `available()` says why not.
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Sequence
from urllib.parse import urlparse

from orthanc_rt.ops import stack
from orthanc_rt.ops.stack import StackConfig
from tests.support.tcp_proxy import CuttableProxy


def available() -> str | None:
    """None when isolated hosts can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@dataclass
class IsolatedHost:
    name: str
    host_ip: str  # this side of the veth pair: where forward() listens
    guest_ip: str
    proxies: list[CuttableProxy] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def forward(self, port: int) -> int:
        """Make 127.0.0.1:`port` of this host reachable from the isolated one at host_ip; the port to use."""
        proxy = CuttableProxy("127.0.0.1", port, bind_host=self.host_ip)
        self.proxies.append(proxy)
        return proxy.port

    def spawn(self, command: Sequence[str], env: dict[str, str], *, private: Sequence[Path] = (),
              output: IO[bytes] | None = None) -> subprocess.Popen:
        """`command` in the isolated network, with empty tmpfs over /tmp and each folder of `private`."""
        mounts = " && ".join(f"mkdir -p {shlex.quote(p)} && mount -t tmpfs tmpfs {shlex.quote(p)}"
                             for p in ["/tmp", *map(str, private)])
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", f'{mounts} && exec "$@"', "sh", *command],
            env=env, stdout=output or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def power_off(self) -> None:
        """As if the host lost power: every process in its network namespace killed at once (RQ's work-horses
        and MCsquare included, which run in sessions of their own), its forwarded connections reset."""
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        for proxy in self.proxies:
            proxy.cut()


def start_worker(host: IsolatedHost, redis_url: str, data_dir: Path, log: Path, timeout_s: float = 90.0) -> str:
    """A worker as the launcher starts one (`python -m worker`), on the isolated host: Redis forwarded to it, its
    data folder an empty tmpfs, Orthanc and the database pointed at a port where nothing answers (the parts of a
    fan-out need neither). Returns its name (the host's: one worker per host) once it has registered with Redis;
    its output goes to `log`."""
    from redis import Redis
    from rq import Worker

    name = f"{host.name}-worker"
    address = urlparse(redis_url)
    port = host.forward(address.port or 6379)
    remote = StackConfig(data_dir=data_dir, redis_url=f"redis://{host.host_ip}:{port}{address.path}",
                         mcsquare_threads=1)
    command, env = stack.worker_command(remote, name)
    env.update({"ORTHANC_RT_ORTHANC_URL": "http://127.0.0.1:9",
                "ORTHANC_RT_DATABASE_URL": "postgresql://orthanc-rt@127.0.0.1:9/none"})
    with open(log, "wb") as output:
        host.spawn(command, env, private=[data_dir], output=output)
    redis = Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    while name not in {w.name for w in Worker.all(connection=redis)}:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the isolated worker did not register in {timeout_s:.0f} s: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    return name


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def isolated_host() -> Iterator[IsolatedHost]:
    """A network namespace on its own /30, torn down (with its processes and forwarders) afterwards."""
    k = random.randrange(1, 16000)
    name, host_if, guest_if = f"ortrt{k}", f"ortrt{k}h", f"ortrt{k}g"
    base = 4 * k  # the /30's network address within 10.213.0.0/16
    host_ip = f"10.213.{base // 256}.{base % 256 + 1}"
    guest_ip = f"10.213.{base // 256}.{base % 256 + 2}"
    _ip("netns", "add", name)
    host = IsolatedHost(name, host_ip, guest_ip)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", guest_if)
        _ip("link", "set", guest_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{guest_ip}/30", "dev", guest_if)
        _ip("netns", "exec", name, "ip", "link", "set", guest_if, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield host
    finally:
        for process in host.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 15)
                    process.wait(timeout=20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(process.pid, 9)
        for proxy in host.proxies:
            proxy.close()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)

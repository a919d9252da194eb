"""Start, watch and stop the processes of one Orthanc-RT installation.

Used by the launcher (`./orthanc-rt start|demo|stop`), by the integration
tests (on free ports, in a temporary folder) and by the container entry
points, so the configuration Orthanc runs with is produced in one place.
Processes are detached (own session) and recorded in <data_dir>/run/*.pid;
each carries ORTHANC_RT_SERVICE=<data_dir>/run/<name> in its environment, and
so do its children (a worker's RQ scheduler, its MCsquare), which is how
`stop` and the supervisor find what a process that died left behind. With
`supervise` (the launcher's default), `start` also starts a supervisor that
restarts whatever of the installation is not running.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from orthanc_rt.settings import PROJECT_DIR, default_of, from_environment, local_orthanc_url

ORTHANC_BINARY = from_environment("orthanc_binary")
# Debian's orthanc-postgresql (scripts/install.sh installs it): Orthanc's own index, and optionally its files,
# in PostgreSQL, so several Orthanc instances can serve one archive.
POSTGRESQL_INDEX_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
POSTGRESQL_STORAGE_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLStorage.so"
ORTHANC_STORAGES = ("files", "postgresql")


@dataclass
class StackConfig:
    """What the launcher runs; `from_env` reads it from the `ORTHANC_RT_*` variables (`orthanc_rt.settings`)."""

    data_dir: Path
    http_port: int = default_of("http_port")
    dicom_port: int = default_of("dicom_port")
    redis_url: str = default_of("redis_url")
    database_url: str = default_of("database_url")  # empty: SQLite file in data_dir
    stable_age_s: int = default_of("stable_age")
    workers: int = default_of("workers")
    mcsquare_threads: int = default_of("mcsquare_threads")
    auto_dose: dict[str, Any] = field(default_factory=dict)  # overrides of OrthancRT.AutoDose
    orthanc_overrides: dict[str, Any] = field(default_factory=dict)
    template: Path = default_of("config_template")  # orthanc_config/orthanc.json, or production.json
    public_orthanc_url: str = ""  # how workers reach Orthanc when not on this host
    viewer_port: int = 0  # OHIF, served by orthanc_rt.ops.viewer; 0: no viewer (the launcher defaults to 3000)
    # Orthanc users (RegisteredUsers) and their Orthanc-RT roles: {name: (password, role or "")}.
    users: dict[str, tuple[str, str]] = field(default_factory=dict)
    worker_username: str = ""  # the workers' own Orthanc user (no Orthanc-RT role needed)
    worker_password: str = ""
    client_auth: tuple[str, str] | None = None  # what the launcher and tests use for /rt/health
    worker_settings: dict[str, str] = field(default_factory=dict)  # extra ORTHANC_RT_* for workers
    # Orthanc's own index (patients, studies, series, instances): empty keeps Orthanc's SQLite file in
    # data_dir; a postgresql:// URL puts it in PostgreSQL, where several Orthanc instances can share it.
    orthanc_index_url: str = ""
    # Where Orthanc keeps the DICOM files: "files" (data_dir/orthanc-storage) or "postgresql" (the index's
    # database: Orthanc instances on several hosts then need no shared file system).
    orthanc_storage: str = default_of("orthanc_storage")
    supervise: bool = False  # start a supervisor with the stack (the launcher: ORTHANC_RT_SUPERVISE, default on)

    @property
    def orthanc_url(self) -> str:
        return self.public_orthanc_url or local_orthanc_url(self.http_port)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'orthanc-rt.sqlite'}"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "StackConfig":
        get = partial(from_environment, env=os.environ if env is None else env)
        return cls(
            data_dir=get("data_dir"),
            http_port=get("http_port"),
            dicom_port=get("dicom_port"),
            redis_url=get("redis_url"),
            database_url=get("database_url"),
            stable_age_s=get("stable_age"),
            workers=get("workers"),
            mcsquare_threads=get("mcsquare_threads"),
            public_orthanc_url=get("orthanc_url"),
            viewer_port=get("viewer_port"),
            orthanc_overrides={"RemoteAccessAllowed": True} if get("remote_access") else {},
            template=get("config_template"),
            users=_users_from_file(get("users_file")),
            worker_username=get("orthanc_username"),
            worker_password=get("orthanc_password"),
            client_auth=_pair(get("client_user"), get("client_password")),
            orthanc_index_url=get("orthanc_index_url"),
            orthanc_storage=get("orthanc_storage"),
            supervise=get("supervise"),
        )


def _users_from_file(path: str) -> dict[str, tuple[str, str]]:
    """ORTHANC_RT_USERS_FILE: JSON {"name": {"password": "...", "role": "physicist"}} (kept out of git)."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    return {name: (str(u["password"]), str(u.get("role", ""))) for name, u in data.items()}


def _pair(user: str, password: str) -> tuple[str, str] | None:
    return (user, password) if user else None


def render_orthanc_config(cfg: StackConfig) -> dict[str, Any]:
    """The template with paths, ports and OrthancRT settings filled in."""
    text = cfg.template.read_text()
    text = text.replace("@DATA_DIR@", str(cfg.data_dir)).replace("@PROJECT_DIR@", str(PROJECT_DIR))
    config = json.loads(text)
    config["HttpPort"] = cfg.http_port
    config["DicomPort"] = cfg.dicom_port
    config["StableAge"] = cfg.stable_age_s
    rt = config.setdefault("OrthancRT", {})
    rt["DatabaseUrl"] = cfg.db_url
    rt["RedisUrl"] = cfg.redis_url
    if cfg.viewer_port:
        rt["ViewerUrl"] = f"http://127.0.0.1:{cfg.viewer_port}"
    rt.setdefault("AutoDose", {}).update(cfg.auto_dose)
    registered = config.setdefault("RegisteredUsers", {})
    roles = rt.setdefault("Roles", {})
    for name, (password, role) in cfg.users.items():
        registered[name] = password
        if role:
            roles[name] = role
    if cfg.worker_username:
        registered[cfg.worker_username] = cfg.worker_password
        if config.get("AuthenticationEnabled"):  # Roles without authentication make the plugin refuse all
            roles[cfg.worker_username] = "worker"  # read inputs, store results (plugin/roles.py)
    if not registered:
        config.pop("RegisteredUsers")
    if not roles:
        rt.pop("Roles")
    _deep_update(config, _orthanc_database(cfg, config["Plugins"]))  # a template's other PostgreSQL keys stay
    _deep_update(config, cfg.orthanc_overrides)
    return config


def _orthanc_database(cfg: StackConfig, plugins: list[str]) -> dict[str, Any]:
    """The Plugins and PostgreSQL sections that move Orthanc's index (and files) to PostgreSQL."""
    if cfg.orthanc_storage not in ORTHANC_STORAGES:
        raise ValueError(f"ORTHANC_RT_ORTHANC_STORAGE: {cfg.orthanc_storage!r}; expected one of {ORTHANC_STORAGES}")
    if not cfg.orthanc_index_url:
        if cfg.orthanc_storage == "postgresql":
            raise ValueError("ORTHANC_RT_ORTHANC_STORAGE=postgresql needs ORTHANC_RT_ORTHANC_INDEX_URL")
        return {}
    scheme, sep, rest = cfg.orthanc_index_url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"ORTHANC_RT_ORTHANC_INDEX_URL must be a postgresql:// URL, got {scheme!r}://...")
    in_database = cfg.orthanc_storage == "postgresql"
    return {
        "Plugins": [*plugins, POSTGRESQL_INDEX_PLUGIN, *([POSTGRESQL_STORAGE_PLUGIN] if in_database else [])],
        "PostgreSQL": {
            "EnableIndex": True,
            "EnableStorage": in_database,
            "ConnectionUri": f"postgresql://{rest}",  # libpq's form ("+psycopg" is SQLAlchemy's)
            # No exclusive lock: several Orthanc instances write to one index (PostgreSQL plugin 4.0).
            "Lock": False,
        },
    }


def python_path() -> str:
    """What Orthanc's embedded Python needs: the project and this virtualenv's packages."""
    return os.pathsep.join([str(PROJECT_DIR), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])


def worker_env(cfg: StackConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ORTHANC_RT_ORTHANC_URL": cfg.orthanc_url,
        "ORTHANC_RT_DATABASE_URL": cfg.db_url,
        "ORTHANC_RT_REDIS_URL": cfg.redis_url,
        "ORTHANC_RT_WORK_DIR": str(cfg.data_dir / "jobs"),
        "ORTHANC_RT_MCSQUARE_THREADS": str(cfg.mcsquare_threads),
        "ORTHANC_RT_DATA_DIR": str(cfg.data_dir),
        "ORTHANC_RT_ORTHANC_USERNAME": cfg.worker_username,
        "ORTHANC_RT_ORTHANC_PASSWORD": cfg.worker_password,
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        # This installation's code: workers run in the data folder, where `-m worker` would otherwise find
        # whichever checkout the virtualenv was installed from.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")])),
    })
    env.update(cfg.worker_settings)
    return env


def orthanc_command(cfg: StackConfig) -> tuple[list[str], dict[str, str]]:
    """Write the Orthanc configuration; returns the command line and environment to run Orthanc."""
    for d in (cfg.data_dir, cfg.run_dir, cfg.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    config_path = cfg.data_dir / "orthanc.json"
    config_path.touch(mode=0o600)  # it may hold passwords
    config_path.chmod(0o600)
    config = render_orthanc_config(cfg)
    missing = [p for p in config.get("Plugins", []) if not Path(p).exists()]
    if missing:
        raise RuntimeError(f"Orthanc plugins not installed: {missing} (scripts/install.sh installs orthanc-python, "
                           "orthanc-dicomweb and orthanc-postgresql)")
    config_path.write_text(json.dumps(config, indent=2))
    env = dict(os.environ)
    env.update({"PYTHONPATH": python_path(), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    return [ORTHANC_BINARY, str(config_path)], env


def worker_command(cfg: StackConfig, name: str) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "worker", "--name", name], worker_env(cfg)


def start_orthanc(cfg: StackConfig) -> int:
    return _spawn("orthanc", *orthanc_command(cfg), cfg)


def start_worker(cfg: StackConfig, index: int = 1) -> int:
    return _spawn(f"worker-{index}", *worker_command(cfg, f"worker-{index}-{os.getpid()}-{cfg.http_port}"), cfg)


def exec_foreground(cfg: StackConfig, service: str) -> None:
    """Replace this process with one service (container entry points, systemd units)."""
    if service == "orthanc":
        cmd, env = orthanc_command(cfg)
    else:
        cmd, env = worker_command(cfg, f"{os.uname().nodename}-{os.getpid()}")
    os.execvpe(cmd[0], cmd, env)


def start_viewer(cfg: StackConfig) -> int | None:
    """OHIF next to Orthanc, if the installer unpacked it (started by `start`)."""
    from orthanc_rt.ops.viewer import ohif_dist

    if not cfg.viewer_port or not (ohif_dist() / "index.html").is_file():
        return None
    cmd = [sys.executable, "-m", "orthanc_rt.ops.viewer", "--port", str(cfg.viewer_port), "--orthanc",
           f"http://127.0.0.1:{cfg.http_port}"]
    # The viewer passes each user's own credentials on; it must not even hold the workers' ones.
    env = {k: v for k, v in worker_env(cfg).items() if k not in ("ORTHANC_RT_ORTHANC_USERNAME",
                                                                    "ORTHANC_RT_ORTHANC_PASSWORD")}
    return _spawn("viewer", cmd, env, cfg)


def ensure_redis(cfg: StackConfig) -> str:
    """Use the Redis at cfg.redis_url; start a private one there if it is local and not running."""
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(cfg.redis_url, socket_connect_timeout=2).ping()
        return "running"
    except RedisError:
        pass
    parsed = urlparse(cfg.redis_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"Redis at {cfg.redis_url} is unreachable and not local: start it first")
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["redis-server", "--bind", parsed.hostname, "--port", str(parsed.port or 6379), "--save", "",
           "--appendonly", "no", "--dir", str(cfg.run_dir)]
    _spawn("redis", cmd, dict(os.environ), cfg)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            Redis.from_url(cfg.redis_url, socket_connect_timeout=1).ping()
            return "started"
        except RedisError:
            time.sleep(0.2)
    raise RuntimeError(f"redis-server did not start; see {cfg.log_dir / 'redis.log'}")


def wait_for_health(cfg: StackConfig, timeout_s: float = 60, *, need_workers: bool = True) -> dict[str, Any]:
    """Wait until /rt/health answers (and a worker has registered); returns its body."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        _raise_if_dead(cfg, "orthanc")
        try:
            r = requests.get(f"{cfg.orthanc_url}/rt/health", timeout=5, auth=cfg.client_auth)
            last = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
            if isinstance(last, dict) and last["checks"]["orthanc"]["ok"] and last["checks"]["database"]["ok"] \
                    and last["checks"]["redis"]["ok"] and (last["checks"]["workers"]["ok"] or not need_workers):
                return last
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"Orthanc-RT not healthy after {timeout_s:.0f} s; last answer: {last!r:.500}; "
                       f"logs in {cfg.log_dir}")


def start(cfg: StackConfig) -> dict[str, Any]:
    """Start everything that is not running yet; returns the health answer."""
    restart_missing(cfg)
    health = wait_for_health(cfg)
    if cfg.supervise and not is_running(cfg, SUPERVISOR):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH", "")]))
        _spawn(SUPERVISOR, [sys.executable, "-m", "orthanc_rt.ops.cli", "supervise"], env, cfg)
    return health


SUPERVISOR = "supervisor"
SUPERVISE_PERIOD_S = 5.0  # a dead worker is replaced within this (its lost job is taken up by RQ's own clean-up)


def restart_missing(cfg: StackConfig, *, only: Any = None) -> list[str]:
    """Start what of the installation is not running (what a dead process left behind is stopped first);
    `only(name)` may hold a service back (the supervisor's back-off). Returns the names started."""
    started = []
    if (only is None or only("redis")) and ensure_redis(cfg) == "started":
        started.append("redis")
    wanted = ["orthanc", *(f"worker-{i}" for i in range(1, cfg.workers + 1))] + (["viewer"] if cfg.viewer_port
                                                                                  else [])
    for name in wanted:
        if is_running(cfg, name) or (only is not None and not only(name)):
            continue
        _stop_left_behind(cfg, name, timeout_s=10)
        if name == "orthanc":
            start_orthanc(cfg)
        elif name == "viewer":
            if start_viewer(cfg) is None:
                continue
        else:
            start_worker(cfg, int(name.split("-")[1]))
        started.append(name)
    return started


# A service that keeps dying is restarted later each time: 5 s, 10 s, 20 s ... at most 5 minutes between
# attempts, counting the restarts of the last 10 minutes (a crash loop must not spin).
BACKOFF_FIRST_S, BACKOFF_MAX_S, BACKOFF_WINDOW_S = 5.0, 300.0, 600.0


def restart_delay_s(recent_restarts: int) -> float:
    """How long after its last restart a service that died again is restarted, given its recent restarts."""
    return 0.0 if recent_restarts < 1 else min(BACKOFF_FIRST_S * 2 ** (recent_restarts - 1), BACKOFF_MAX_S)


def supervise(cfg: StackConfig, *, period_s: float = SUPERVISE_PERIOD_S, stop_when: Any = None) -> None:
    """Restart what dies, every `period_s` (with back-off per service), until `stop_when` (a threading.Event)
    is set or SIGTERM. Restarts are logged and kept in <run dir>/supervisor.json, which `status` shows."""
    import logging
    import threading

    log = logging.getLogger("orthanc_rt.supervisor")
    stopping = stop_when or threading.Event()
    if stop_when is None:
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    history: dict[str, list[float]] = {}

    def due(name: str) -> bool:
        recent = [t for t in history.get(name, []) if time.time() - t < BACKOFF_WINDOW_S]
        return not recent or time.time() - recent[-1] >= restart_delay_s(len(recent))

    while not stopping.wait(period_s):
        try:
            started = restart_missing(cfg, only=due)
        except Exception as exc:  # a start that fails now may work next period (a port still held, Redis down)
            log.warning("supervisor: %s: %s", type(exc).__name__, exc)
            continue
        for name in started:
            history.setdefault(name, []).append(time.time())
            log.warning("supervisor: %s was not running: restarted (%d restarts in all)", name, len(history[name]))
        if started:
            restarts = {name: {"restarts": len(times), "last": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                                               time.localtime(times[-1]))}
                        for name, times in history.items()}
            (cfg.run_dir / "supervisor.json").write_text(json.dumps(restarts, indent=2))


def supervisor_record(cfg: StackConfig) -> dict[str, Any]:
    """What the supervisor restarted, by service (empty when nothing was or no supervisor runs)."""
    try:
        return json.loads((cfg.run_dir / "supervisor.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def stop(cfg: StackConfig, timeout_s: float = 20) -> list[str]:
    """Stop every process this installation started (workers first)."""
    stopped = []
    names = sorted((p.stem for p in cfg.run_dir.glob("*.pid")), key=lambda n: (n == "redis", n == "orthanc", n))
    for name in names:
        pid = read_pid(cfg, name)
        if pid is not None and process_alive(pid):
            _terminate(pid, timeout_s)
            stopped.append(name)
        if _stop_left_behind(cfg, name, timeout_s) and name not in stopped:
            stopped.append(name)
        (cfg.run_dir / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def stop_service(cfg: StackConfig, name: str, timeout_s: float = 20) -> bool:
    """Stop one process of the installation ("orthanc", "worker-2", "redis"); True if it was running."""
    pid = read_pid(cfg, name)
    running = pid is not None and process_alive(pid)
    if running:
        _terminate(pid, timeout_s)
    _stop_left_behind(cfg, name, timeout_s)
    (cfg.run_dir / f"{name}.pid").unlink(missing_ok=True)
    return running


def is_running(cfg: StackConfig, name: str) -> bool:
    pid = read_pid(cfg, name)
    return pid is not None and process_alive(pid)


def status(cfg: StackConfig) -> dict[str, bool]:
    return {p.stem: is_running(cfg, p.stem) for p in sorted(cfg.run_dir.glob("*.pid"))}


def _spawn(name: str, cmd: list[str], env: dict[str, str], cfg: StackConfig) -> int:
    log = open(cfg.log_dir / f"{name}.log", "ab")
    env = {**env, SERVICE_MARK: _service_mark(cfg, name)}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            cwd=str(cfg.data_dir), start_new_session=True)
    log.close()
    (cfg.run_dir / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


SERVICE_MARK = "ORTHANC_RT_SERVICE"


def _service_mark(cfg: StackConfig, name: str) -> str:
    return str(cfg.run_dir / name)


def left_behind(cfg: StackConfig, name: str) -> list[int]:
    """Living processes of service `name` other than the one its pid file names: what a killed worker leaves
    (its RQ scheduler, an MCsquare). Found by the mark in their environment, which a reused pid cannot have."""
    mark = f"{SERVICE_MARK}={_service_mark(cfg, name)}".encode()
    leader = read_pid(cfg, name)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0") and process_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _stop_left_behind(cfg: StackConfig, name: str, timeout_s: float) -> bool:
    """SIGTERM, then SIGKILL, what `left_behind` finds; True if there was anything."""
    pids = left_behind(cfg, name)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 5)
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            _reap(pid)
        if not any(process_alive(pid) for pid in pids):
            break
    return bool(pids)


def _raise_if_dead(cfg: StackConfig, name: str) -> None:
    if (cfg.run_dir / f"{name}.pid").exists() and not is_running(cfg, name):
        log = cfg.log_dir / f"{name}.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{name} exited; last lines of {log}:\n{tail}")


def read_pid(cfg: StackConfig, name: str) -> int | None:
    try:
        return int((cfg.run_dir / f"{name}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _terminate(pid: int, timeout_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # the process group: a worker's MCsquare goes too
    except (ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):
            _reap(pid)
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _deep_update(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value

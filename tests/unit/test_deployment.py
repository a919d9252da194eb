"""docker-compose.yml and Dockerfile stay thin over the launcher the tests exercise.

No Docker engine runs here, so this checks what can go stale: the commands the
services run exist in the launcher, the environment they set is read by the
code (and lands where it should), ports and health checks match the configuration.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orthanc_rt.ops import cli, stack
from orthanc_rt.ops.stack import PROJECT_DIR, StackConfig, render_orthanc_config
from orthanc_rt.settings import Settings

COMPOSE = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


@pytest.mark.parametrize("service, expected", [("orthanc", "orthanc"), ("worker", "worker")])
def test_service_commands_are_launcher_commands(service, expected):
    command = SERVICES[service]["command"]
    args = cli.build_parser().parse_args(command)  # SystemExit if the launcher does not know it
    assert (args.command, args.service) == ("run", expected)


def test_dockerfile_enters_through_the_launcher():
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["./orthanc-rt"]' in dockerfile
    assert "bash scripts/install.sh" in dockerfile
    assert (PROJECT_DIR / "orthanc-rt").stat().st_mode & 0o111


def test_environment_reaches_the_settings():
    for service in ("orthanc", "worker"):
        env = _env(service)
        stack_cfg = StackConfig.from_env(env)
        settings = Settings.from_env(env)
        assert stack_cfg.db_url == env["ORTHANC_RT_DATABASE_URL"] == settings.database_url
        assert stack_cfg.redis_url == env["ORTHANC_RT_REDIS_URL"] == settings.redis_url
        assert stack_cfg.orthanc_url == env["ORTHANC_RT_ORTHANC_URL"] == settings.orthanc_url
        assert str(stack_cfg.data_dir) == env["ORTHANC_RT_DATA_DIR"]
        known = _variables_read_by_code()
        unknown = sorted(k for k in env if k.startswith("ORTHANC_RT_") and k not in known)
        assert not unknown, f"compose sets variables no code reads: {unknown}"


def test_orthanc_service_ports_health_and_database():
    env = _env("orthanc")
    config = render_orthanc_config(StackConfig.from_env(env))
    ports = {p.split(":")[-1] for p in SERVICES["orthanc"]["ports"]}
    assert ports == {str(config["HttpPort"]), str(config["DicomPort"])}
    assert config["RemoteAccessAllowed"] is True  # workers reach it from another container
    assert config["OrthancRT"]["DatabaseUrl"] == env["ORTHANC_RT_DATABASE_URL"]
    health = SERVICES["orthanc"]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{config['HttpPort']}/rt/health" in health
    pg = SERVICES["postgres"]["environment"]
    assert f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}" in env[
        "ORTHANC_RT_DATABASE_URL"]
    json.dumps(config)  # what Orthanc will read must be plain JSON


def test_orthanc_service_keeps_its_index_in_postgresql():
    env = _env("orthanc")
    config = render_orthanc_config(StackConfig.from_env(env))
    assert stack.POSTGRESQL_INDEX_PLUGIN in config["Plugins"]
    assert Path(stack.POSTGRESQL_INDEX_PLUGIN).exists()  # scripts/install.sh installs orthanc-postgresql
    pg = config["PostgreSQL"]
    assert pg["EnableIndex"] is True and pg["Lock"] is False  # several Orthanc instances may share it
    assert pg["ConnectionUri"] == env["ORTHANC_RT_ORTHANC_INDEX_URL"]
    assert pg["EnableStorage"] is (env["ORTHANC_RT_ORTHANC_STORAGE"] == "postgresql")
    postgres = SERVICES["postgres"]["environment"]
    assert f"@postgres:5432/{postgres['POSTGRES_DB']}" in pg["ConnectionUri"]


def test_orthanc_database_settings_are_checked(tmp_path):
    plain = render_orthanc_config(StackConfig(data_dir=tmp_path))
    assert "PostgreSQL" not in plain and stack.POSTGRESQL_INDEX_PLUGIN not in plain["Plugins"]
    in_database = render_orthanc_config(StackConfig(data_dir=tmp_path, orthanc_storage="postgresql",
                                                    orthanc_index_url="postgresql+psycopg://u:p@db:5432/o"))
    assert in_database["PostgreSQL"]["ConnectionUri"] == "postgresql://u:p@db:5432/o"  # libpq's form
    assert stack.POSTGRESQL_STORAGE_PLUGIN in in_database["Plugins"]
    template = tmp_path / "template.json"  # e.g. a production template tuning the connection pool
    template.write_text(json.dumps({**json.loads(StackConfig(data_dir=tmp_path).template.read_text()),
                                    "PostgreSQL": {"IndexConnectionsCount": 5, "EnableIndex": False}}))
    tuned = render_orthanc_config(StackConfig(data_dir=tmp_path, template=template,
                                              orthanc_index_url="postgresql://db/o"))
    assert tuned["PostgreSQL"]["IndexConnectionsCount"] == 5 and tuned["PostgreSQL"]["EnableIndex"] is True
    with pytest.raises(ValueError, match="postgresql://"):
        render_orthanc_config(StackConfig(data_dir=tmp_path, orthanc_index_url="mysql://orthanc@db/orthanc"))
    with pytest.raises(ValueError, match="ORTHANC_RT_ORTHANC_INDEX_URL"):
        render_orthanc_config(StackConfig(data_dir=tmp_path, orthanc_storage="postgresql"))
    with pytest.raises(ValueError, match="ORTHANC_RT_ORTHANC_STORAGE"):
        render_orthanc_config(StackConfig(data_dir=tmp_path, orthanc_index_url="postgresql://db/o",
                                          orthanc_storage="s3"))


def test_launcher_script_passes_run_to_the_cli():
    """The services' command (`./orthanc-rt run orthanc|worker`) must reach orthanc_rt.ops.cli."""
    script = (PROJECT_DIR / "orthanc-rt").read_text()
    passing = next(line for line in script.splitlines() if "exec \"$py\" -m orthanc_rt.ops.cli \"$cmd\"" in line)
    assert "run" in passing.split(")")[0].split("|")


def _variables_read_by_code() -> set[str]:
    import re

    names: set[str] = set()
    for path in [*Path(PROJECT_DIR / "orthanc_rt").rglob("*.py"), *Path(PROJECT_DIR / "worker").rglob("*.py")]:
        text = path.read_text()
        names.update(re.findall(r'"(ORTHANC_RT_[A-Z_]+)"', text))
        names.update(f"ORTHANC_RT_{n}" for n in re.findall(r'get\("([A-Z_]+)"', text))
    return names


def test_production_template_locks_the_dicom_port_and_gives_the_workers_their_role(tmp_path):
    production = render_orthanc_config(StackConfig(
        data_dir=tmp_path, template=PROJECT_DIR / "orthanc_config" / "production.json",
        users={"ada": ("pw", "admin")}, worker_username="rt-worker", worker_password="secret"))
    assert production["OrthancRT"]["Roles"] == {"ada": "admin", "rt-worker": "worker"}
    assert not any(production[f"DicomAlwaysAllow{what}"]
                   for what in ("Echo", "Store", "Find", "FindWorklist", "Get", "Move"))
    assert production["DicomCheckModalityHost"] is True
    # Without authentication, a role would make the plugin refuse everything (an unchecked header).
    development = render_orthanc_config(StackConfig(data_dir=tmp_path, worker_username="rt-worker",
                                                    worker_password="secret"))
    assert "Roles" not in development["OrthancRT"]


def test_every_compose_service_comes_back_by_itself():
    assert {name: service.get("restart") for name, service in SERVICES.items()} == \
        {name: "unless-stopped" for name in SERVICES}


@pytest.mark.parametrize("unit, service", [("orthanc-rt.service", "orthanc"),
                                           ("orthanc-rt-worker@.service", "worker")])
def test_systemd_units_restart_their_service_through_the_launcher(unit, service):
    import configparser

    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((PROJECT_DIR / "packaging" / "systemd" / unit).read_text())
    section = parser["Service"]
    assert section["Restart"] == "always" and int(section["RestartSec"]) > 0
    launcher, *command = section["ExecStart"].split()
    assert launcher.endswith("/orthanc-rt")
    args = cli.build_parser().parse_args(command)
    assert (args.command, args.service) == ("run", service)
    if service == "worker":  # its RQ scheduler and MCsquare go with it
        assert section["KillMode"] == "control-group"


def test_the_launcher_supervises_by_default_and_the_tests_stacks_do_not():
    assert StackConfig.from_env({}).supervise is True
    assert StackConfig.from_env({"ORTHANC_RT_SUPERVISE": "false"}).supervise is False
    assert StackConfig(data_dir=Path("/tmp/x")).supervise is False
    assert cli.build_parser().parse_args(["supervise"]).command == "supervise"


def test_a_service_that_keeps_dying_is_restarted_later_each_time():
    assert [stack.restart_delay_s(n) for n in range(0, 9)] == [0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]

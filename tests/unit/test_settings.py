from orthanc_rt.settings import Settings


def test_env_and_orthanc_config_give_the_same_settings():
    env = Settings.from_env({
        "ORTHANC_RT_DATABASE_URL": "postgresql://rt:secret@db/rt",
        "ORTHANC_RT_REDIS_URL": "redis://q:6379/2",
        "ORTHANC_RT_AUTO_DOSE": "false",
        "ORTHANC_RT_AUTO_DOSE_PRIMARIES": "20000",
        "ORTHANC_RT_AUTO_DOSE_SCORING_SPACING_MM": "3",
        "ORTHANC_RT_WAIT_FOR_CT_SECONDS": "30",
    })
    cfg = Settings.from_orthanc_config({"OrthancRT": {
        "DatabaseUrl": "postgresql://rt:secret@db/rt",
        "RedisUrl": "redis://q:6379/2",
        "AutoDose": {"Enabled": False, "Primaries": 20000, "ScoringSpacingMm": 3, "WaitForCtSeconds": 30},
    }})
    assert env.auto_dose == cfg.auto_dose
    assert (env.database_url, env.redis_url) == (cfg.database_url, cfg.redis_url)
    assert env.auto_dose.enabled is False and env.auto_dose.scoring_spacing_mm == 3.0


def test_default_database_is_a_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ORTHANC_RT_DATA_DIR", str(tmp_path))
    s = Settings.from_env({})
    assert s.database_url == f"sqlite:///{tmp_path / 'orthanc-rt.sqlite'}"


def test_redacted_settings_hide_passwords():
    s = Settings.from_env({"ORTHANC_RT_DATABASE_URL": "postgresql://rt:secret@db/rt"})
    shown = str(s.redacted())
    assert "secret" not in shown and "db/rt" in shown


def test_no_credentials_in_health_or_orthanc_errors():
    import pytest

    from orthanc_rt.errors import OrthancUnavailable
    from orthanc_rt.pacs.client import HttpOrthanc

    s = Settings.from_env({"ORTHANC_RT_ORTHANC_URL": "http://rt:urlsecret@127.0.0.1:1",
                           "ORTHANC_RT_ORTHANC_USERNAME": "rt", "ORTHANC_RT_ORTHANC_PASSWORD": "pwsecret"})
    assert "secret" not in str(s.redacted())
    api = HttpOrthanc(s.orthanc_url, s.orthanc_username, s.orthanc_password, timeout_s=2)
    with pytest.raises(OrthancUnavailable) as info:
        api.get_bytes("/system")
    assert "secret" not in str(info.value)


def test_beamlet_fan_out_settings_come_from_the_environment():
    default = Settings.from_env({})
    assert default.distributed_beamlets is True and default.beamlet_split_spots == 500
    s = Settings.from_env({"ORTHANC_RT_DISTRIBUTED_BEAMLETS": "no", "ORTHANC_RT_BEAMLET_SPLIT_SPOTS": "120"})
    assert s.distributed_beamlets is False and s.beamlet_split_spots == 120
    assert s.redacted()["beamlet_split_spots"] == 120 and s.redacted()["distributed_beamlets"] is False


def test_the_plugin_shows_its_own_orthanc_and_leaves_worker_settings_to_the_workers():
    from orthanc_rt.planning.auto_rules import shown_settings
    from orthanc_rt.settings import WORKER_ONLY

    plugin = Settings.from_orthanc_config({"HttpPort": 8999, "OrthancRT": {}})
    assert plugin.orthanc_url == "http://127.0.0.1:8999"
    assert Settings.from_orthanc_config({"HttpPort": 8443, "SslEnabled": True}).orthanc_url == "https://127.0.0.1:8443"
    shown = shown_settings(plugin)
    assert shown["orthanc_url"] == "http://127.0.0.1:8999" and not set(WORKER_ONLY) & set(shown)
    worker = Settings.from_env({"ORTHANC_RT_ORTHANC_URL": "http://rt:pw@pacs:8042", "ORTHANC_RT_MCSQUARE_THREADS": "3",
                                "ORTHANC_RT_WORK_DIR": "/srv/jobs"})
    published = worker.for_workers()
    assert published["mcsquare_threads"] == 3 and published["work_dir"] == "/srv/jobs"
    assert published["orthanc_url"] == "http://***@pacs:8042" and set(WORKER_ONLY) <= set(published)

"""The Alembic migrations, run from empty, produce exactly the tables the models describe; data migrations."""
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orthanc_rt.records import db
from orthanc_rt.records.tables import Base


def test_migrations_match_models(database_url):
    with db.engine_for(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(database_url):
    db.upgrade(database_url)  # second run: nothing to do, no error
    with db.engine_for(database_url).connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == _head()


def _head() -> str:
    """The newest revision of the migrations shipped (each file names its revision)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(db.__file__).parent / "migrations")).get_current_head()


def test_the_duration_totals_migration_fills_them_from_the_histories(database_url):
    from alembic import command
    from alembic.config import Config

    from orthanc_rt.records import durations, jobs
    from tests.support.records import jobs_row

    store = jobs.JobStore(database_url)
    job, _ = store.create(jobs_row("dose-before-0008"), actor="plugin")
    store.start(job.id, actor="worker")
    store.progress(job.id, stage="Monte Carlo", fraction=0.5, eta_seconds=None)
    store.transition(job.id, jobs.SUCCEEDED, from_states=[jobs.RUNNING], stage="done", actor="worker")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    cfg.attributes["connection_url"] = db.normalize_url(database_url)
    command.downgrade(cfg, "0007")  # the table goes: these jobs ran before it existed
    db.upgrade(database_url)
    stages = durations.histograms(database_url, durations.STAGE)
    assert {stage for _, stage in stages} == {"starting", "Monte Carlo"}
    assert durations.histograms(database_url, durations.JOB)[("dose", jobs.SUCCEEDED)].count == 1
    # The migration has its own frozen copy of the rules: as of now it must agree with durations.rebuild.
    migrated = {family: durations.histograms(database_url, family) for family in (durations.JOB, durations.STAGE)}
    with db.session_scope(database_url) as s:
        durations.rebuild(s)
    for family, histograms in migrated.items():
        rebuilt = durations.histograms(database_url, family)
        assert histograms.keys() == rebuilt.keys()
        for key, histogram in histograms.items():
            assert histogram.cumulative == rebuilt[key].cumulative, key
            assert histogram.seconds == pytest.approx(rebuilt[key].seconds, abs=1e-6), key

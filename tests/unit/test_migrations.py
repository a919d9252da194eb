"""The Alembic migrations, run from empty, produce exactly the tables the models describe."""
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
    from pathlib import Path

    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(db.__file__).parent / "migrations")).get_current_head()

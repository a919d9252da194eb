"""Alembic environment: the URL comes from the caller (orthanc_rt.records.db.upgrade)."""
from alembic import context
from sqlalchemy import create_engine

from orthanc_rt.records.tables import Base

config = context.config
url = config.attributes.get("connection_url") or config.get_main_option("sqlalchemy.url")
# As every engine of Orthanc-RT's (orthanc_rt.records.db): a silent server is an error after a few seconds.
engine = create_engine(url, connect_args={} if url.startswith("sqlite") else {"connect_timeout": 10})
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=url.startswith("sqlite"),  # SQLite cannot ALTER most things
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

"""The records: the database engine, its tables and migrations, and one store per record family.

Jobs, plans, dose checks, measurements and the audit trail live in PostgreSQL (SQLite when nothing is configured);
`tables` defines them, `migrations/` creates them (Alembic), `db` opens sessions, and each store module
(`jobs`, `plans`, `checks`, `measurements`, `audit`) reads and writes one family; `durations` keeps the running
totals of job and stage durations that the jobs' store adds to.
"""

# The modules other packages may import; a module whose name starts with _ is private.
__all__ = ["audit", "checks", "db", "durations", "jobs", "manual_measurements", "measurements", "plans", "tables"]

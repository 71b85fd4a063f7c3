"""The store's schema, as numbered forward migrations for both backends.

Version ``n`` means the same logical schema on SQLite and PostgreSQL, so a deployment can move
between backends without a second numbering to keep in step. Each backend records the versions it
applied in its own ``schema_version`` table and applies the missing ones at start (and by
``silobridge store migrate``) inside one transaction that also holds a lock, so two processes
starting together migrate once: SQLite takes its write lock with ``BEGIN IMMEDIATE``, PostgreSQL
an advisory transaction lock. A database whose version is newer than the last one listed here was
written by a newer silobridge; running older code against it could corrupt it, so it is refused.

Version 1 is the schema of the release before versioning (tables created if absent, so a store
that release created keeps its rows); never edit a released migration, append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from middleware.errors import SilobridgeError

__all__ = ["MIGRATIONS", "Migration", "MigrationReport", "SchemaTooNew", "latest_version"]


@dataclass(frozen=True)
class Migration:
    version: int
    why: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


@dataclass(frozen=True)
class MigrationReport:
    """What one migration run found and did: ``applied`` is empty when nothing was due."""

    before: int
    after: int
    applied: tuple[int, ...]


class SchemaTooNew(SilobridgeError):
    """The database was migrated by a newer silobridge than this one."""

    def __init__(self, where: str, found: int, known: int) -> None:
        super().__init__(
            f"the store at {where} has schema version {found}, but this silobridge knows "
            f"versions up to {known}: it was migrated by a newer release. Run that release (or "
            f"newer), or point 'store' at another database; this one is left untouched"
        )
        self.found = found
        self.known = known


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "the tables of the release before schema versioning",
        sqlite=(
            "CREATE TABLE IF NOT EXISTS delivered ("
            " route TEXT NOT NULL, message_id TEXT NOT NULL, at REAL NOT NULL,"
            " PRIMARY KEY (route, message_id)) WITHOUT ROWID",
            "CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at)",
            "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS xref ("
            " ns_a TEXT NOT NULL, key_a TEXT NOT NULL, ns_b TEXT NOT NULL, key_b TEXT NOT NULL,"
            " PRIMARY KEY (ns_a, key_a, ns_b), UNIQUE (ns_b, key_b, ns_a)) WITHOUT ROWID",
        ),
        postgres=(
            "CREATE TABLE IF NOT EXISTS silobridge_delivered ("
            " route text NOT NULL, message_id text NOT NULL, at double precision NOT NULL,"
            " PRIMARY KEY (route, message_id))",
            "CREATE INDEX IF NOT EXISTS silobridge_delivered_at ON silobridge_delivered (at)",
            "CREATE TABLE IF NOT EXISTS silobridge_state ("
            " name text PRIMARY KEY, value text NOT NULL)",
            "CREATE TABLE IF NOT EXISTS silobridge_xref ("
            " ns_a text NOT NULL, key_a text NOT NULL, ns_b text NOT NULL, key_b text NOT NULL,"
            " PRIMARY KEY (ns_a, key_a, ns_b), UNIQUE (ns_b, key_b, ns_a))",
        ),
    ),
    Migration(
        2, "ingress claims: a record is 'pending' while its owner publishes, then 'done'",
        sqlite=(
            "ALTER TABLE delivered ADD COLUMN state TEXT NOT NULL DEFAULT 'done'",
            "ALTER TABLE delivered ADD COLUMN owner TEXT",
        ),
        postgres=(
            "ALTER TABLE silobridge_delivered ADD COLUMN state text NOT NULL DEFAULT 'done'",
            "ALTER TABLE silobridge_delivered ADD COLUMN owner text",
        ),
    ),
    Migration(
        3, "leases: one replica runs each poller (holder and expiry, renewed by the holder)",
        sqlite=(
            "CREATE TABLE lease ("
            " name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)",
        ),
        postgres=(
            "CREATE TABLE silobridge_lease ("
            " name text PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL)",
        ),
    ),
    Migration(
        4, "console: users, sessions, API tokens and the audit log (middleware.console)",
        sqlite=(
            "CREATE TABLE IF NOT EXISTS console_user ("
            " name TEXT PRIMARY KEY, password TEXT, role TEXT NOT NULL,"
            " routes TEXT NOT NULL DEFAULT '', created REAL NOT NULL)",
            "CREATE TABLE IF NOT EXISTS console_credential ("
            " digest TEXT PRIMARY KEY, kind TEXT NOT NULL, user_name TEXT NOT NULL,"
            " csrf TEXT, label TEXT, expires REAL, created REAL NOT NULL)",
            "CREATE INDEX IF NOT EXISTS console_credential_user ON console_credential (user_name)",
            "CREATE TABLE IF NOT EXISTS console_audit ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,"
            " action TEXT NOT NULL, target TEXT NOT NULL, before TEXT, after TEXT)",
        ),
        postgres=(
            "CREATE TABLE IF NOT EXISTS silobridge_console_user ("
            " name text PRIMARY KEY, password text, role text NOT NULL,"
            " routes text NOT NULL DEFAULT '', created double precision NOT NULL)",
            "CREATE TABLE IF NOT EXISTS silobridge_console_credential ("
            " digest text PRIMARY KEY, kind text NOT NULL, user_name text NOT NULL,"
            " csrf text, label text, expires double precision,"
            " created double precision NOT NULL)",
            "CREATE INDEX IF NOT EXISTS silobridge_console_credential_user"
            " ON silobridge_console_credential (user_name)",
            "CREATE TABLE IF NOT EXISTS silobridge_console_audit ("
            " id bigserial PRIMARY KEY, at double precision NOT NULL, actor text NOT NULL,"
            " action text NOT NULL, target text NOT NULL, before text, after text)",
        ),
    ),
    Migration(
        5, "two-way sync: per-subject applied version and claim; fingerprints of writes",
        sqlite=(
            "CREATE TABLE sync_subject ("
            " route TEXT NOT NULL, subject TEXT NOT NULL, applied INTEGER,"
            " holder TEXT, holder_version INTEGER, held_until REAL, parked INTEGER NOT NULL"
            " DEFAULT 0, PRIMARY KEY (route, subject)) WITHOUT ROWID",
            "CREATE TABLE sync_echo ("
            " ns TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
            " expires REAL NOT NULL, PRIMARY KEY (ns, key, fingerprint)) WITHOUT ROWID",
            "CREATE INDEX sync_echo_expires ON sync_echo (expires)",
        ),
        postgres=(
            "CREATE TABLE silobridge_sync_subject ("
            " route text NOT NULL, subject text NOT NULL, applied bigint,"
            " holder text, holder_version bigint, held_until double precision,"
            " parked boolean NOT NULL DEFAULT false, PRIMARY KEY (route, subject))",
            "CREATE TABLE silobridge_sync_echo ("
            " ns text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,"
            " expires double precision NOT NULL, PRIMARY KEY (ns, key, fingerprint))",
            "CREATE INDEX silobridge_sync_echo_expires ON silobridge_sync_echo (expires)",
        ),
    ),
    Migration(
        6, "two-way sync: when a subject was last applied, so its row can be pruned",
        # rows of migration 5 count as applied now: none is forgotten before its retention
        sqlite=(
            "ALTER TABLE sync_subject ADD COLUMN applied_at REAL NOT NULL DEFAULT 0",
            "UPDATE sync_subject SET applied_at = CAST(strftime('%s', 'now') AS REAL)"
            " WHERE applied IS NOT NULL",
        ),
        postgres=(
            "ALTER TABLE silobridge_sync_subject ADD COLUMN applied_at double precision"
            " NOT NULL DEFAULT 0",
            "UPDATE silobridge_sync_subject SET applied_at = extract(epoch FROM now())"
            " WHERE applied IS NOT NULL",
        ),
    ),
)


def latest_version() -> int:
    return MIGRATIONS[-1].version

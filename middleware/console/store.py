"""Users, credentials (sessions and API tokens) and the audit log, in the project's store.

The tables come from migration 3 (``middleware.stores.migrations``), on SQLite or PostgreSQL
like every other store, so replicas sharing a PostgreSQL store share logins and one audit log.
Credentials are kept only as SHA-256 digests: a stolen database yields no usable session or
token. Every method blocks (file or network I/O); the API calls them on a worker thread, never
on its event loop.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from middleware.config.models import StoreConfig
from middleware.errors import ProcessingError

__all__ = ["AuditRecord", "ConsoleStore", "Credential", "User", "XrefLink", "open_console_store"]


@dataclass(frozen=True)
class User:
    name: str
    role: str
    routes: tuple[str, ...]
    """Routes this user may see; empty means every route."""
    created: float
    password: str | None = None
    """The argon2 hash (None for a user that logs in through tokens only)."""

    def public(self) -> dict[str, Any]:
        """What the API shows of a user: never the hash."""
        return {"name": self.name, "role": self.role, "routes": list(self.routes),
                "created": self.created}


@dataclass(frozen=True)
class Credential:
    kind: str  # "session" or "token"
    user: User
    csrf: str | None
    label: str | None
    expires: float | None


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    target: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class XrefLink:
    ns_a: str
    key_a: str
    ns_b: str
    key_b: str


class _Sql(Protocol):
    prefix: str

    def run(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def run_many(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None: ...

    def close(self) -> None: ...


class _SqliteSql:
    prefix = ""

    def __init__(self, path: Path) -> None:
        from middleware.stores.sqlite import connect

        self._db = connect(path)
        self._lock = threading.Lock()

    def run(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors(), self._lock:
            return list(self._db.execute(query, tuple(params)).fetchall())

    def run_many(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        with self._errors(), self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for query, params in statements:
                    self._db.execute(query, tuple(params))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise ProcessingError(f"console store: {exc}", retryable=False) from exc
        except sqlite3.Error as exc:
            raise ProcessingError(f"console store error ({type(exc).__name__}); try again",
                                  retryable=True) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _PostgresSql:
    prefix = "silobridge_"

    def __init__(self, config: StoreConfig) -> None:
        from middleware.stores import read_dsn
        from middleware.stores.postgres import PostgresBackend

        self._dsn = read_dsn(config)
        self._timeout = config.connect_timeout
        self._backend = PostgresBackend(self._dsn, max_size=2,
                                        statement_timeout=config.statement_timeout,
                                        connect_timeout=config.connect_timeout)

    def run(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._backend.run("console", query.replace("?", "%s"), params)

    def run_many(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Several statements in one transaction, on a short connection of their own (the
        shared pool runs in autocommit)."""
        import psycopg

        try:
            with psycopg.connect(self._dsn, connect_timeout=max(1, round(self._timeout))) as db, \
                    db.transaction():
                for query, params in statements:
                    db.execute(query.replace("?", "%s"), params)
        except psycopg.Error as exc:
            raise ProcessingError(f"console store error ({type(exc).__name__})",
                                  retryable=isinstance(exc, psycopg.OperationalError)) from exc

    def close(self) -> None:
        self._backend.close()


def open_console_store(config: StoreConfig) -> ConsoleStore:
    """Migrate the configured store, then open the console's tables in it."""
    from middleware.stores import migrate_store

    migrate_store(config)
    if config.kind == "postgres":
        return ConsoleStore(_PostgresSql(config))
    return ConsoleStore(_SqliteSql(Path(config.path)))


class ConsoleStore:
    """The console's rows; thread-safe (the SQLite side locks, PostgreSQL pools)."""

    def __init__(self, sql: _Sql) -> None:
        self._sql = sql
        p = sql.prefix
        self._user, self._cred = f"{p}console_user", f"{p}console_credential"
        self._audit, self._xref = f"{p}console_audit", f"{p}xref"

    # users ---------------------------------------------------------------------------------
    def add_user(self, name: str, password: str | None, role: str,
                 routes: Sequence[str] = ()) -> User:
        created = time.time()
        self._sql.run(f"INSERT INTO {self._user} VALUES (?, ?, ?, ?, ?)",
                      (name, password, role, ",".join(routes), created))
        return User(name, role, tuple(routes), created, password)

    def user(self, name: str) -> User | None:
        rows = self._sql.run(f"SELECT name, role, routes, created, password FROM {self._user}"
                             " WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def users(self) -> list[User]:
        rows = self._sql.run(f"SELECT name, role, routes, created, password FROM {self._user}"
                             " ORDER BY name")
        return [_user(row) for row in rows]

    def remove_user(self, name: str) -> bool:
        """Delete a user with every session and token it holds."""
        self._sql.run(f"DELETE FROM {self._cred} WHERE user_name = ?", (name,))
        return bool(self._sql.run(f"DELETE FROM {self._user} WHERE name = ? RETURNING name",
                                  (name,)))

    def set_role(self, name: str, role: str, routes: Sequence[str]) -> bool:
        return bool(self._sql.run(f"UPDATE {self._user} SET role = ?, routes = ? WHERE name = ?"
                                  " RETURNING name", (role, ",".join(routes), name)))

    def set_password(self, name: str, password: str) -> bool:
        return bool(self._sql.run(f"UPDATE {self._user} SET password = ? WHERE name = ?"
                                  " RETURNING name", (password, name)))

    # credentials ---------------------------------------------------------------------------
    def add_credential(self, digest: str, kind: str, user: str, *, csrf: str | None = None,
                       label: str | None = None, expires: float | None = None) -> None:
        self._sql.run(f"INSERT INTO {self._cred} VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (digest, kind, user, csrf, label, expires, time.time()))

    def credential(self, digest: str, now: float) -> Credential | None:
        """The live credential with this digest and its user (None: unknown or expired)."""
        rows = self._sql.run(
            f"SELECT c.kind, c.csrf, c.label, c.expires, u.name, u.role, u.routes, u.created,"
            f" u.password FROM {self._cred} c JOIN {self._user} u ON u.name = c.user_name"
            f" WHERE c.digest = ? AND (c.expires IS NULL OR c.expires > ?)", (digest, now))
        if not rows:
            return None
        kind, csrf, label, expires, *user = rows[0]
        return Credential(kind, _user(tuple(user)), csrf, label, expires)

    def drop_credential(self, digest: str) -> None:
        self._sql.run(f"DELETE FROM {self._cred} WHERE digest = ?", (digest,))

    def tokens(self, user: str) -> list[tuple[str, float]]:
        """Labels and creation times of a user's API tokens (never the tokens)."""
        rows = self._sql.run(f"SELECT label, created FROM {self._cred} WHERE user_name = ?"
                             " AND kind = 'token' ORDER BY created", (user,))
        return [(str(label or ""), float(created)) for label, created in rows]

    # failed sign-ins ----------------------------------------------------------------------
    # Rows of kind 'login_failure' in the credential table: the key ('user:NAME' or
    # 'client:ADDRESS') in user_name, a random digest, 'expires' at the end of the window. So
    # replicas sharing the store share the count, without a table (and migration) of its own;
    # such a row never resolves as a credential (kind and digest differ from any asked for).
    def login_failures(self, key: str, now: float) -> tuple[int, float | None]:
        """Failures of ``key`` still inside their window, and when the oldest one ends."""
        rows = self._sql.run(f"SELECT COUNT(*), MIN(expires) FROM {self._cred}"
                             " WHERE kind = 'login_failure' AND user_name = ? AND expires > ?",
                             (key, now))
        count, ends = rows[0] if rows else (0, None)
        return int(count or 0), None if ends is None else float(ends)

    def add_login_failure(self, keys: Sequence[str], now: float, window: float) -> None:
        statements: list[tuple[str, Sequence[Any]]] = [
            (f"DELETE FROM {self._cred} WHERE kind = 'login_failure' AND expires <= ?", (now,))]
        statements += [(f"INSERT INTO {self._cred} VALUES (?, 'login_failure', ?, NULL, NULL,"
                         " ?, ?)", (f"failure:{secrets.token_hex(16)}", key, now + window, now))
                       for key in keys]
        self._sql.run_many(statements)

    def clear_login_failures(self, key: str) -> None:
        self._sql.run(f"DELETE FROM {self._cred} WHERE kind = 'login_failure' AND user_name = ?",
                      (key,))

    def prune(self, now: float, audit_before: float) -> None:
        """Forget expired sessions and audit records past their retention."""
        self._sql.run(f"DELETE FROM {self._cred} WHERE expires IS NOT NULL AND expires <= ?",
                      (now,))
        self._sql.run(f"DELETE FROM {self._audit} WHERE at < ?", (audit_before,))

    # audit ---------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, before: str | None,
              after: str | None) -> None:
        self._sql.run(f"INSERT INTO {self._audit} (at, actor, action, target, before, after)"
                      " VALUES (?, ?, ?, ?, ?, ?)",
                      (time.time(), actor, action, target, before, after))

    def audit_records(self, limit: int, offset: int, actor: str | None = None,
                      action: str | None = None) -> list[AuditRecord]:
        """Newest first, optionally only one actor's or one action's."""
        rows = self._sql.run(
            f"SELECT id, at, actor, action, target, before, after FROM {self._audit}"
            " WHERE (CAST(? AS TEXT) IS NULL OR actor = ?)"
            " AND (CAST(? AS TEXT) IS NULL OR action = ?)"
            " ORDER BY id DESC LIMIT ? OFFSET ?",
            (actor, actor, action, action, limit, offset))
        return [AuditRecord(int(r[0]), float(r[1]), *r[2:]) for r in rows]

    # cross-references ----------------------------------------------------------------------
    def xref_search(self, namespace: str | None, key: str | None, limit: int,
                    offset: int) -> list[XrefLink]:
        """Links touching a namespace and/or a key (prefix match on the key)."""
        pattern = None if key is None else key.replace("\\", "\\\\").replace("%", "\\%") \
            .replace("_", "\\_") + "%"
        rows = self._sql.run(
            f"SELECT ns_a, key_a, ns_b, key_b FROM {self._xref}"
            " WHERE (CAST(? AS TEXT) IS NULL OR ns_a = ? OR ns_b = ?)"
            " AND (CAST(? AS TEXT) IS NULL OR key_a LIKE ? ESCAPE '\\'"
            " OR key_b LIKE ? ESCAPE '\\')"
            " ORDER BY ns_a, key_a, ns_b LIMIT ? OFFSET ?",
            (namespace, namespace, namespace, pattern, pattern, pattern, limit, offset))
        return [XrefLink(*map(str, row)) for row in rows]

    def xref_fix(self, link: XrefLink) -> None:
        """Make ``link`` the one link between its two records, replacing any link either of
        them had to the other namespace, atomically."""
        from middleware.stores.xref_sqlite import canonical

        a_ns, a_key, b_ns, b_key = canonical(link.ns_a, link.key_a, link.ns_b, link.key_b)
        delete = (f"DELETE FROM {self._xref} WHERE ns_a = ? AND ns_b = ?"
                  " AND (key_a = ? OR key_b = ?)")
        insert = f"INSERT INTO {self._xref} VALUES (?, ?, ?, ?)"
        self._sql.run_many([(delete, (a_ns, b_ns, a_key, b_key)),
                            (insert, (a_ns, a_key, b_ns, b_key))])

    def xref_unlink(self, namespace: str, key: str, other: str) -> XrefLink | None:
        """Remove the link of ``namespace:key`` to namespace ``other``; the removed link, or
        None when there was none."""
        if namespace <= other:
            rows = self._sql.run(f"DELETE FROM {self._xref} WHERE ns_a = ? AND key_a = ?"
                                 " AND ns_b = ? RETURNING key_b", (namespace, key, other))
            return XrefLink(namespace, key, other, str(rows[0][0])) if rows else None
        rows = self._sql.run(f"DELETE FROM {self._xref} WHERE ns_a = ? AND ns_b = ?"
                             " AND key_b = ? RETURNING key_a", (other, namespace, key))
        return XrefLink(other, str(rows[0][0]), namespace, key) if rows else None

    def close(self) -> None:
        self._sql.close()


def _user(row: tuple[Any, ...]) -> User:
    name, role, routes, created, password = row
    return User(str(name), str(role), tuple(r for r in str(routes).split(",") if r),
                float(created), password)

"""Console users, credentials, audit and xref fixes, written once and run on SQLite and on the
real PostgreSQL (migration 3 creates the tables on both)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from middleware.config.models import ConsoleConfig, StoreConfig
from middleware.console.auth import Authenticator, LoginThrottled, hash_password
from middleware.console.store import ConsoleStore, XrefLink, open_console_store
from middleware.errors import ProcessingError
from middleware.stores import open_stores
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)


@pytest.fixture(params=["sqlite", "postgres"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    if request.param == "sqlite":
        return StoreConfig(kind="sqlite", path=str(tmp_path / "store.db"))
    return StoreConfig(kind="postgres", dsn=request.getfixturevalue("pg_dsn"))


@pytest.fixture
def store(store_config: StoreConfig) -> Iterator[ConsoleStore]:
    console = open_console_store(store_config)
    yield console
    console.close()


def test_console_store_users_roundtrip_and_removal_ends_credentials(store: ConsoleStore) -> None:
    store.add_user("ana", hash_password("correct horse battery"), "operator", ["crm-a", "crm-b"])
    store.add_user("bo", None, "viewer")
    assert [u.name for u in store.users()] == ["ana", "bo"]
    ana = store.user("ana")
    assert ana is not None and ana.routes == ("crm-a", "crm-b") and ana.role == "operator"
    with pytest.raises(ProcessingError):
        store.add_user("ana", None, "admin")  # the name is taken
    auth = Authenticator(store, ConsoleConfig())
    token = auth.issue_token("ana", "ci")
    assert auth.resolve(None, f"Bearer {token}") is not None
    assert store.set_role("ana", "admin", [])
    principal = auth.resolve(None, f"Bearer {token}")
    assert principal is not None and principal.role == "admin" and principal.may_see_route("x")
    assert store.remove_user("ana")
    assert auth.resolve(None, f"Bearer {token}") is None  # a deleted user's token is dead
    assert not store.remove_user("ana")


def test_console_auth_sessions_expire_and_csrf_is_bound(store: ConsoleStore) -> None:
    store.add_user("cy", hash_password("a long passphrase here"), "integrator")
    auth = Authenticator(store, ConsoleConfig(session_ttl=0.5))
    assert auth.login("cy", "wrong password!!", "10.0.0.1") is None
    session = auth.login("cy", "a long passphrase here", "10.0.0.1")
    assert session is not None
    cookie, csrf = session
    principal = auth.resolve(cookie, None)
    assert principal is not None and principal.via == "session"
    assert principal.csrf_ok(csrf)
    assert not principal.csrf_ok("forged") and not principal.csrf_ok(None)
    assert auth.resolve(None, f"Bearer {cookie}") is None  # a session is not a token
    # every credential sent must be valid and name the same user
    store.add_user("ed", None, "admin")
    other = auth.issue_token("ed", "t")
    own = auth.issue_token("cy", "t")
    assert auth.resolve(cookie, f"Bearer {other}") is None
    assert auth.resolve("stale", f"Bearer {own}") is None
    both = auth.resolve(cookie, f"Bearer {own}")
    assert both is not None and both.via == "token"
    time.sleep(0.6)
    assert auth.resolve(cookie, None) is None  # expired


def test_console_auth_login_rate_limited_per_name(store: ConsoleStore) -> None:
    store.add_user("di", hash_password("a long passphrase here"), "viewer")
    auth = Authenticator(store, ConsoleConfig(login_attempts=3))
    for n in range(3):
        assert auth.login("di", "nope", f"10.0.0.{n}") is None
    with pytest.raises(LoginThrottled) as caught:  # even the right password, from a new address
        auth.login("di", "a long passphrase here", "10.0.0.9")
    assert caught.value.retry_after > 0


def test_console_login_limit_is_shared_by_replicas_of_one_store(
    store: ConsoleStore, store_config: StoreConfig
) -> None:
    # Given two replicas on one store, each allowing 3 failed sign-ins per name in 300 s
    store.add_user("ed", hash_password("a long passphrase here"), "viewer")
    other = open_console_store(store_config)
    try:
        first, second = (Authenticator(s, ConsoleConfig(login_attempts=3)) for s in (store, other))
        assert first.login("ed", "wrong", "10.1.0.1") is None
        assert second.login("ed", "wrong", "10.1.0.2") is None
        assert first.login("ed", "wrong", "10.1.0.3") is None
        # Then the other replica refuses the fourth, even with the right password
        with pytest.raises(LoginThrottled) as caught:
            second.login("ed", "a long passphrase here", "10.1.0.4")
        assert 290 <= caught.value.retry_after <= 301
        # a failure row is no credential; clearing the name's count (what a sign-in does) lets
        # the name in again from an address without failures
        assert first.resolve(None, "Bearer sbt_failure") is None
        assert other.login_failures("user:ed", time.time())[0] == 3
        other.clear_login_failures("user:ed")
        assert first.login("ed", "a long passphrase here", "10.1.0.5") is not None
    finally:
        other.close()


def test_console_store_audit_newest_first_and_filtered(store: ConsoleStore) -> None:
    store.audit("ana", "dlq.replay", "route-a", None, '{"ids": ["1"]}')
    store.audit("bo", "dlq.purge", "route-b", '{"count": 2}', None)
    records = store.audit_records(10, 0)
    assert [r.action for r in records] == ["dlq.purge", "dlq.replay"]
    assert [r.actor for r in store.audit_records(10, 0, actor="ana")] == ["ana"]
    assert store.audit_records(1, 1)[0].action == "dlq.replay"


def test_console_store_xref_fix_replaces_both_sides_atomically(
    store: ConsoleStore, store_config: StoreConfig
) -> None:
    stores = open_stores(store_config)
    try:
        stores.xref.link("crm.customer", "C-1", "erp.account", "A-1")
        stores.xref.link("crm.customer", "C-2", "erp.account", "A-2")
        # C-1 should be A-2: both old links go, the new one is the only one left
        store.xref_fix(XrefLink("crm.customer", "C-1", "erp.account", "A-2"))
        assert stores.xref.lookup("crm.customer", "C-1", "erp.account") == "A-2"
        assert stores.xref.lookup("erp.account", "A-2", "crm.customer") == "C-1"
        assert stores.xref.lookup("crm.customer", "C-2", "erp.account") is None
        assert stores.xref.lookup("erp.account", "A-1", "crm.customer") is None
        found = store.xref_search("crm.customer", "C-", 10, 0)
        assert found == [XrefLink("crm.customer", "C-1", "erp.account", "A-2")]
        assert store.xref_search(None, "C_", 10, 0) == []  # LIKE wildcards are literal
    finally:
        stores.close()


def test_console_store_xref_unlink_removes_one_link_from_either_side(
    store: ConsoleStore, store_config: StoreConfig
) -> None:
    stores = open_stores(store_config)
    try:
        stores.xref.link("crm.customer", "C-1", "erp.account", "A-1")
        stores.xref.link("crm.customer", "C-2", "erp.account", "A-2")
        stores.xref.link("crm.customer", "C-1", "shop.buyer", "B-1")
        # from the side stored second (erp.account > crm.customer), then from the first
        assert store.xref_unlink("erp.account", "A-1", "crm.customer") == XrefLink(
            "crm.customer", "C-1", "erp.account", "A-1")
        assert store.xref_unlink("crm.customer", "C-2", "erp.account") == XrefLink(
            "crm.customer", "C-2", "erp.account", "A-2")
        assert store.xref_unlink("crm.customer", "C-1", "erp.account") is None
        assert stores.xref.lookup("crm.customer", "C-1", "erp.account") is None
        assert stores.xref.lookup("crm.customer", "C-1", "shop.buyer") == "B-1"  # kept
    finally:
        stores.close()

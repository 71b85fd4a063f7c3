"""Who is calling: argon2 passwords, sessions with CSRF tokens, API tokens, login throttling.

A browser signs in once and holds a session cookie (HttpOnly, SameSite=Strict, Secure unless
turned off for loopback); because a cookie is sent by the browser on its own, every mutating
request on a session must also carry the session's CSRF token in ``X-CSRF-Token``. Automation
sends ``Authorization: Bearer <token>`` instead: nothing ambient, so no CSRF token is needed.
Sessions and tokens are stored as SHA-256 digests and die with their user.

Failed logins are counted per user name and per client address over a sliding window, in the
console store, so replicas sharing it share the count.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from middleware.config.models import ConsoleConfig
from middleware.console.store import ConsoleStore, User

__all__ = ["SESSION_COOKIE", "Authenticator", "LoginLimiter", "Principal", "hash_password",
           "new_token"]

SESSION_COOKIE = "silobridge_session"
TOKEN_PREFIX = "sbt_"
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """A signed-in caller: its user, how it authenticated, and its session's CSRF token."""

    user: User
    via: str  # "session" or "token"
    csrf: str | None
    credential: str  # the digest, to end the session on logout

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role

    def may_see_route(self, route: str) -> bool:
        return not self.user.routes or route in self.user.routes

    def csrf_ok(self, header: str | None) -> bool:
        """Tokens need no CSRF token; sessions need theirs, compared in constant time."""
        if self.via == "token":
            return True
        if not header or self.csrf is None:
            return False
        return hmac.compare_digest(header.encode(), self.csrf.encode())


class LoginLimiter:
    """Failed logins per key (a user name, a client address) over a sliding window, counted in
    the console store, so every replica sharing the store sees the same count (a guesser
    cannot multiply the allowance by the number of replicas)."""

    def __init__(self, store: ConsoleStore, attempts: int, window: float) -> None:
        self._store, self._attempts, self._window = store, attempts, window

    def retry_after(self, keys: list[str], now: float) -> int | None:
        """Seconds until one more attempt is allowed, or None when it is allowed now."""
        waits = []
        for key in keys:
            count, oldest_ends = self._store.login_failures(key, now)
            if count >= self._attempts and oldest_ends is not None:
                waits.append(oldest_ends - now)
        return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, keys: list[str], now: float) -> None:
        self._store.add_login_failure(keys, now, self._window)

    def succeeded(self, name_key: str) -> None:
        self._store.clear_login_failures(name_key)


class LoginThrottled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after}s")
        self.retry_after = retry_after


class Authenticator:
    """Blocking (store and argon2): call from a worker thread."""

    def __init__(self, store: ConsoleStore, config: ConsoleConfig) -> None:
        self.store = store
        self.config = config
        self.limiter = LoginLimiter(store, config.login_attempts, config.login_window)

    def login(self, name: str, password: str, client: str) -> tuple[str, str] | None:
        """A new session (cookie value, CSRF token) for good credentials, else None.

        Raises ``LoginThrottled`` while the name or the client address is over the limit; an
        unknown name costs as much as a wrong password, so timing does not reveal names.
        """
        now = time.time()
        keys = [f"user:{name}", f"client:{client}"]
        wait = self.limiter.retry_after(keys, now)
        if wait is not None:
            raise LoginThrottled(wait)
        user = self.store.user(name)
        if not _verify(user.password if user else None, password):
            self.limiter.failed(keys, time.time())
            return None
        assert user is not None
        self.limiter.succeeded(keys[0])
        return self.new_session(user.name, time.time())  # the TTL runs from issue, not from
        # the start of a request whose argon2 check can take seconds on a busy host

    def new_session(self, user: str, now: float) -> tuple[str, str]:
        """A session (cookie value, CSRF token) for a user already authenticated."""
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.store.add_credential(digest(session), "session", user, csrf=csrf,
                                  expires=now + self.config.session_ttl)
        return session, csrf

    def resolve(self, cookie: str | None, authorization: str | None) -> Principal | None:
        """The caller behind a bearer token and/or a session cookie.

        Every credential presented must be valid, and two must name the same user: a stale
        cookie next to a good token (or the reverse) is refused rather than silently ignored.
        The token's principal is used when both are given (no CSRF token is needed for it).
        """
        found: list[Principal | None] = []
        if authorization is not None:
            scheme, _, secret = authorization.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip().startswith(TOKEN_PREFIX):
                return None
            found.append(self._principal(secret.strip(), "token"))
        if cookie is not None:
            found.append(self._principal(cookie, "session"))
        principals = [p for p in found if p is not None]
        if not found or len(principals) != len(found) or len({p.name for p in principals}) != 1:
            return None
        return principals[0]

    def _principal(self, secret: str, via: str) -> Principal | None:
        key = digest(secret)
        credential = self.store.credential(key, time.time())
        if credential is None or credential.kind != via:
            return None
        return Principal(credential.user, via, credential.csrf, key)

    def logout(self, principal: Principal) -> None:
        if principal.via == "session":
            self.store.drop_credential(principal.credential)

    def issue_token(self, user: str, label: str) -> str:
        token = new_token()
        self.store.add_credential(digest(token), "token", user, label=label)
        return token


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False

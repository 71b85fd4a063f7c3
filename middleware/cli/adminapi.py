"""The CLI's way to a running daemon: its admin API, when one is named and a token is given.

Going through the API rather than straight to the broker means the daemon's access control
applies (a viewer's token cannot replay) and every change lands in the audit log under the
token's user. Where is the API: ``--api URL``, else ``$SILOBRIDGE_API``, else the console the
config enables (its own port, or the ops port it shares). The token comes from
``$SILOBRIDGE_API_TOKEN`` only (an option would put it in the shell history and ``ps``).

Only an API that cannot be reached falls back to the direct way (the broker for ``dlq``, the
store for ``xref`` and ``users``) with a note on stderr: a refusal (401, 403) is an answer, and
going around it would defeat it. Nor does a change the API took without answering (the
connection broke, or the answer timed out): the daemon may have made it, and making it again
the direct way could replay a message twice. ``through_api`` is that rule, shared by every
command group; each group's ``*_api`` module holds only what it asks the API and how it prints
the answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from middleware.config.loader import load_config
from middleware.config.models import Config

__all__ = ["API_ENV", "TOKEN_ENV", "AdminApi", "ApiLost", "ApiRefused", "ApiUnreachable", "Via",
           "add_api_argument", "api_from_args", "store_unless_api", "through_api"]

API_ENV = "SILOBRIDGE_API"
TOKEN_ENV = "SILOBRIDGE_API_TOKEN"


class ApiUnreachable(Exception):
    """No answer from the API (connection refused, timeout, TLS failure)."""


class ApiLost(Exception):
    """A change was sent but no answer came: it may or may not have been made."""


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
             httpx.UnsupportedProtocol)
"""Failures before the request left: the daemon cannot have acted on it."""


class ApiRefused(Exception):
    """The API answered with an error; the message is its own, which says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the admin API refused ({status}): {message}")
        self.status = status


def add_api_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api", metavar="URL", default=os.environ.get(API_ENV) or None,
        help=f"go through the daemon's admin API at URL (default ${API_ENV}, else the console "
             f"the config enables) with the token in ${TOKEN_ENV}; checked by the daemon's "
             "roles and audited; without a token, or when the API cannot be reached: "
             "straight to the broker or store")


def _from_config(config: Config) -> str | None:
    console = config.console
    if not console.enabled:
        return None
    if console.port is not None and console.port != 0:
        scheme = "https" if console.tls is not None else "http"
        return f"{scheme}://{_host(console.host)}:{console.port}"
    ops = config.ops
    scheme = "https" if ops.tls is not None else "http"
    return None if not ops.port else f"{scheme}://{_host(ops.host)}:{ops.port}"


def _host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def api_from_args(args: argparse.Namespace, config: Config) -> AdminApi | None:
    """The API to use, or None: straight to the broker (no token, or no API anywhere)."""
    token = os.environ.get(TOKEN_ENV)
    url = getattr(args, "api", None) or _from_config(config)
    if not token or not url:
        return None
    return AdminApi(url, token)


Via = Callable[["AdminApi", argparse.Namespace], int]
"""One command done through the API; returns the exit code."""


def through_api(args: argparse.Namespace, config: Config, via: Via, *,
                direct: str = "the broker") -> int | None:
    """Run ``via`` against the API; None when the command should go the direct way instead
    (no API or token, or the API cannot be reached, which is said on stderr naming ``direct``,
    what the command uses then)."""
    api = api_from_args(args, config)
    if api is None:
        return None
    try:
        return via(api, args)
    except ApiUnreachable as exc:
        print(f"note: {exc}; using {direct} directly", file=sys.stderr)
        return None
    except (ApiRefused, ApiLost) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        api.close()


def store_unless_api(args: argparse.Namespace, via: Callable[[AdminApi], int]) -> int | None:
    """``through_api`` for commands whose direct way is the configured store (``-c`` is
    required there): the exit code through the API, or None: use the store."""
    return through_api(args, load_config(args.config).config, lambda api, _args: via(api),
                       direct="the store")


class AdminApi:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout,
                                    headers={"Authorization": f"Bearer {token}",
                                             "Accept": "application/json"})

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None) -> Any:
        try:
            answer = self._client.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:
            if method != "GET" and not isinstance(exc, _NOT_SENT):
                raise ApiLost(f"the admin API at {self.url} took the request but gave no "
                              f"answer ({type(exc).__name__}); it may have made the change: "
                              "look (list or show) before trying again") from None
            raise ApiUnreachable(f"the admin API at {self.url} cannot be reached "
                                 f"({type(exc).__name__})") from None
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise ApiRefused(answer.status_code, str(message or answer.reason_phrase))
        return data

    def pages(self, path: str, field: str, params: dict[str, Any] | None = None,
              size: int = 500) -> Iterator[dict[str, Any]]:
        """Every item of an ``offset``/``limit`` paged listing, one request per page."""
        offset = 0
        while True:
            page = self.call("GET", path, params={**(params or {}), "limit": size,
                                                  "offset": offset})[field]
            yield from page
            if len(page) < size:
                return
            offset += len(page)

    def dead_letters(self, route: str, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` summaries, read page by page (the API pages at 500)."""
        found: list[dict[str, Any]] = []
        while len(found) < limit:
            page = self.call("GET", f"/api/v1/routes/{quote(route, safe='')}/dead-letters",
                             params={"limit": min(500, limit - len(found)),
                                     "offset": len(found)})
            found.extend(page["items"])
            if len(found) >= page["total"] or not page["items"]:
                break
        return found

    def dead_letter(self, route: str, message_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/v1/routes/{quote(route, safe='')}/dead-letters/"
                                     f"{quote(message_id, safe='')}"))

    def routes(self) -> list[str]:
        return [row["route"] for row in self.call("GET", "/api/v1/routes")["routes"]]

    def replay(self, route: str, ids: list[str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"all": True} if ids is None else {"ids": ids}
        return dict(self.call("POST", f"/api/v1/routes/{quote(route, safe='')}/dead-letters/"
                                      "replay", body=body))

    def purge(self, route: str) -> int:
        return int(self.call("POST", f"/api/v1/routes/{quote(route, safe='')}/dead-letters/"
                                     "purge", body={"confirm": route})["purged"])

    def close(self) -> None:
        self._client.close()

"""Roles, permissions and the admin API's endpoint table: one source for three uses.

``ENDPOINTS`` is the table the API builds its routes from (so an endpoint cannot exist without
a permission), the table the access test walks for every role, and the table ``matrix_markdown``
renders into ``docs/console.md``. Roles are cumulative, like RabbitMQ's management tags or
Grafana's roles: each one adds to the one below.

Payload bodies are a separate dimension (``BodyView``): a viewer never receives one, an operator
receives it with every value masked (structure and keys kept, so the failure can be understood),
an integrator or admin receives it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ENDPOINTS", "GRANTS", "BodyView", "Endpoint", "Permission", "Role", "allowed",
           "body_view", "matrix_markdown"]


class Role(StrEnum):
    VIEWER = "viewer"
    """Status, metrics, errors and dead-letter lists; no payload bodies."""
    OPERATOR = "operator"
    """Plus dead-letter replay and purge; bodies masked."""
    INTEGRATOR = "integrator"
    """Plus edit-and-replay, cross-reference fixes; bodies visible."""
    ADMIN = "admin"
    """Plus users, roles, tokens and the audit log."""


class Permission(StrEnum):
    SELF = "self"
    """Any signed-in user: who am I, log out."""
    ROUTES_READ = "routes:read"
    ERRORS_READ = "errors:read"
    DLQ_READ = "dlq:read"
    DLQ_REPLAY = "dlq:replay"
    DLQ_PURGE = "dlq:purge"
    DLQ_EDIT = "dlq:edit"
    MAPPING_READ = "mapping:read"
    MAPPING_WRITE = "mapping:write"
    XREF_READ = "xref:read"
    XREF_WRITE = "xref:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    AUDIT_READ = "audit:read"


class BodyView(StrEnum):
    NONE = "none"
    MASKED = "masked"
    FULL = "full"


_VIEWER = {Permission.SELF, Permission.ROUTES_READ, Permission.ERRORS_READ, Permission.DLQ_READ}
_OPERATOR = _VIEWER | {Permission.DLQ_REPLAY, Permission.DLQ_PURGE, Permission.XREF_READ}
_INTEGRATOR = _OPERATOR | {Permission.DLQ_EDIT, Permission.XREF_WRITE, Permission.MAPPING_READ,
                           Permission.MAPPING_WRITE}
_ADMIN = _INTEGRATOR | {Permission.USERS_READ, Permission.USERS_WRITE, Permission.AUDIT_READ}

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_VIEWER),
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.INTEGRATOR: frozenset(_INTEGRATOR),
    Role.ADMIN: frozenset(_ADMIN),
}

_BODIES = {Role.VIEWER: BodyView.NONE, Role.OPERATOR: BodyView.MASKED,
           Role.INTEGRATOR: BodyView.FULL, Role.ADMIN: BodyView.FULL}


def allowed(role: str, permission: Permission | None) -> bool:
    """Whether the role holds the permission; None (a public endpoint) is allowed to all."""
    if permission is None:
        return True
    try:
        return permission in GRANTS[Role(role)]
    except ValueError:  # a role this release does not know grants nothing
        return False


def body_view(role: str) -> BodyView:
    try:
        return _BODIES[Role(role)]
    except ValueError:
        return BodyView.NONE


@dataclass(frozen=True)
class Endpoint:
    """One admin API operation; ``permission`` None means public (login, the OpenAPI doc)."""

    name: str
    method: str
    path: str
    permission: Permission | None
    summary: str

    @property
    def mutating(self) -> bool:
        return self.method not in ("GET", "HEAD")

    @property
    def route_scoped(self) -> bool:
        """Whether a user limited to some routes is checked against ``{route}``."""
        return "{route}" in self.path


_DL = "/api/v1/routes/{route}/dead-letters"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("openapi", "GET", "/api/v1/openapi.json", None, "This API's OpenAPI document"),
    Endpoint("login", "POST", "/api/v1/login", None,
             "Sign in with name and password; sets the session cookie, returns the CSRF token"),
    Endpoint("login_options", "GET", "/api/v1/login", None,
             "The ways to sign in: password, and OpenID Connect when configured"),
    Endpoint("oidc_start", "GET", "/api/v1/oidc/start", None,
             "Start an OpenID Connect sign-in: redirects the browser to the provider"),
    Endpoint("oidc_callback", "GET", "/api/v1/oidc/callback", None,
             "The provider's redirect back: checks it, opens a session, redirects to the console"),
    Endpoint("logout", "POST", "/api/v1/logout", Permission.SELF, "End this session"),
    Endpoint("me", "GET", "/api/v1/me", Permission.SELF,
             "Who is signed in: name, role, routes, permissions, CSRF token"),
    Endpoint("routes", "GET", "/api/v1/routes", Permission.ROUTES_READ,
             "Every route with its live state: queues, DLQ and oldest age, rates, sync lag"),
    Endpoint("route", "GET", "/api/v1/routes/{route}", Permission.ROUTES_READ,
             "One route: live state, retry tier depths, recent failures, the mapping in use"),
    Endpoint("errors", "GET", "/api/v1/errors", Permission.ERRORS_READ,
             "Failures across routes (newest first), without bodies: searched by text, "
             "route, stage and error class, paged"),
    Endpoint("dead_letters", "GET", _DL, Permission.DLQ_READ,
             "A route's dead letters, filtered and paged"),
    Endpoint("dead_letter", "GET", _DL + "/{id}", Permission.DLQ_READ,
             "One dead letter: headers, and the body as the role may see it"),
    Endpoint("replay", "POST", _DL + "/replay", Permission.DLQ_REPLAY,
             "Replay some dead letters (by id) or all of them to the route queue"),
    Endpoint("edit_replay", "POST", _DL + "/{id}/edit-replay", Permission.DLQ_EDIT,
             "Replace a dead letter's event and replay it (audited with before and after)"),
    Endpoint("purge", "POST", _DL + "/purge", Permission.DLQ_PURGE,
             "Delete every dead letter of a route (the route name confirms)"),
    Endpoint("mapping", "GET", "/api/v1/routes/{route}/mapping", Permission.MAPPING_READ,
             "The route's mapping: YAML text, rules, source and target schema fields"),
    Endpoint("mapping_preview", "POST", "/api/v1/routes/{route}/mapping/preview",
             Permission.MAPPING_READ, "Run the mapping (or a candidate text) on a sample"),
    Endpoint("mapping_test", "POST", "/api/v1/routes/{route}/mapping/test",
             Permission.MAPPING_READ, "Run the mapping's .test.yaml cases (on a candidate)"),
    Endpoint("mapping_save", "PUT", "/api/v1/routes/{route}/mapping", Permission.MAPPING_WRITE,
             "Save new YAML, or links written into the YAML (comments kept); hot-reloaded"),
    Endpoint("xref_search", "GET", "/api/v1/xref", Permission.XREF_READ,
             "Search cross-references by namespace and key prefix"),
    Endpoint("xref_fix", "PUT", "/api/v1/xref", Permission.XREF_WRITE,
             "Set the link between two records, replacing their old links"),
    Endpoint("xref_unlink", "POST", "/api/v1/xref/unlink", Permission.XREF_WRITE,
             "Remove the link of one record to another namespace"),
    Endpoint("users", "GET", "/api/v1/users", Permission.USERS_READ, "Every user and role"),
    Endpoint("user_add", "POST", "/api/v1/users", Permission.USERS_WRITE, "Add a user"),
    Endpoint("user_update", "PUT", "/api/v1/users/{name}", Permission.USERS_WRITE,
             "Change a user's role, routes or password"),
    Endpoint("user_remove", "DELETE", "/api/v1/users/{name}", Permission.USERS_WRITE,
             "Remove a user with its sessions and tokens"),
    Endpoint("token_add", "POST", "/api/v1/users/{name}/tokens", Permission.USERS_WRITE,
             "Issue an API token for a user (shown once)"),
    Endpoint("audit", "GET", "/api/v1/audit", Permission.AUDIT_READ,
             "The audit log, newest first; format=ndjson exports it"),
)


def matrix_markdown() -> str:
    """The permission matrix as a Markdown table (generated into docs/console.md)."""
    roles = list(Role)
    lines = ["| endpoint | permission | " + " | ".join(roles) + " |",
             "|---|---|" + "---|" * len(roles)]
    for endpoint in ENDPOINTS:
        if endpoint.permission is None:
            cells = ["yes (public)"] * len(roles)
        else:
            cells = ["yes" if allowed(role, endpoint.permission) else "-" for role in roles]
        permission = endpoint.permission.value if endpoint.permission else "none"
        lines.append(f"| `{endpoint.method} {endpoint.path}` | {permission} | "
                     + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| role | payload bodies |")
    lines.append("|---|---|")
    lines.extend(f"| {role} | {body_view(role).value} |" for role in roles)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m middleware.console.rbac: the table for docs/console.md
    print(matrix_markdown(), end="")

"""The permission table is the one source: the docs show it as generated, the OpenAPI document
lists exactly its endpoints, and the handler table serves exactly them."""

from __future__ import annotations

import itertools
from pathlib import Path

from middleware.console.handlers import HANDLERS
from middleware.console.openapi import document
from middleware.console.rbac import (
    ENDPOINTS,
    BodyView,
    Permission,
    Role,
    allowed,
    body_view,
    matrix_markdown,
)

DOC = Path(__file__).parents[3] / "docs" / "console.md"


def test_rbac_docs_table_is_generated_from_the_enforced_table() -> None:
    text = DOC.read_text()
    between = text.split("<!-- matrix:start -->\n")[1].split("<!-- matrix:end -->")[0]
    assert between == matrix_markdown(), "run: python -m middleware.console.rbac"


def test_rbac_openapi_and_handlers_cover_exactly_the_table() -> None:
    served = {(method.upper(), path) for path, ops in document()["paths"].items()
              for method in ops}
    assert served == {(e.method, e.path) for e in ENDPOINTS}
    assert set(HANDLERS) == {e.name for e in ENDPOINTS}


def test_rbac_roles_are_cumulative_and_bodies_follow_the_issue() -> None:
    roles = list(Role)
    for lower, higher in itertools.pairwise(roles):
        for permission in Permission:
            assert not allowed(lower, permission) or allowed(higher, permission)
    assert not allowed("viewer", Permission.DLQ_REPLAY)
    assert allowed("operator", Permission.DLQ_PURGE)
    assert not allowed("operator", Permission.XREF_WRITE)
    assert allowed("integrator", Permission.XREF_WRITE)
    assert not allowed("integrator", Permission.USERS_WRITE)
    assert [body_view(r) for r in roles] == [BodyView.NONE, BodyView.MASKED, BodyView.FULL,
                                             BodyView.FULL]
    assert not allowed("superuser", Permission.SELF)  # an unknown role grants nothing
    assert body_view("superuser") is BodyView.NONE

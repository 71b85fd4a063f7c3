"""The poller (httpx) against a loopback HTTPS API signed by a private CA, with the real broker:
without ``tls.ca_file`` the run fails saying what to set and publishes nothing; with it (and the
client certificate the API requires) the records are published."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from middleware.broker.topology import queue_name
from middleware.cli import main
from middleware.config.loader import LoadedConfig
from tests.integration.helpers import drain
from tests.integration.rest_helpers import catch_all_route
from tests.tls_helpers import HttpsPeer, Pki

pytestmark = pytest.mark.integration

PRODUCTS = {"items": [{"sku": "P-1"}, {"sku": "P-2"}]}


def _poller(prefix: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "poll", "name": f"{prefix}-products", "schedule": "0 2 * * *",
            "system": prefix, "url": url, "records": "items",
            "derive": {"entity": {"value": "product"}, "action": {"value": "upserted"},
                       "subject": {"path": "sku"}}, **extra}


def test_tls_poller_reaches_a_private_ca_api_with_a_client_certificate(
    amqp_url: str, prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    api_ca, our_ca = Pki(tmp_path, "api"), Pki(tmp_path, "silobridge")
    cert, key = our_ca.issue("poller", common_name="silobridge")
    with HttpsPeer(*api_ca.issue("api"), client_ca=our_ca.ca_file,
                   answer=(200, orjson.dumps(PRODUCTS), "application/json")) as api:
        url = f"{api.url}/products"
        plain = make_config([catch_all_route(prefix)], inbound=[_poller(prefix, url)])
        assert main(["poll", f"{prefix}-products", "--once", "-c", str(plain.path)]) == 1
        error = capsys.readouterr().err
        assert "was not accepted" in error and "set tls.ca_file" in error, error
        assert api.requests == []
        trusted = make_config([catch_all_route(prefix)], inbound=[_poller(
            prefix, url, tls={"ca_file": api_ca.ca_file, "cert_file": cert, "key_file": key})])
        assert main(["poll", f"{prefix}-products", "--once", "-c", str(trusted.path)]) == 0
    published = [orjson.loads(body) for _, body in drain(amqp_url, queue_name(f"{prefix}-r"))]
    assert sorted(event["subject"] for event in published) == ["P-1", "P-2"]
    assert [(m, p) for m, p, _ in api.requests] == [("GET", "/products")]

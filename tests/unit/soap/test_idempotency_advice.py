"""A SOAP target whose message carries no idempotency key is said, naming the route (issue 15
item 3): the NAV WSDL has no request-id argument, and ``validate`` used to say nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from middleware.cli import main

CONFIG = """
routes:
  - name: nav-customers
    bind: [crm.customer.*]
    target: {{type: soap, wsdl: nav.wsdl, operation: Create{idempotency}}}
  - name: erp-orders
    bind: [crm.order.*]
    target: {{type: soap, wsdl: erp.wsdl, operation: CreateSalesOrder,
             idempotency: {{argument: RequestId}}}}
"""


@pytest.mark.parametrize(("idempotency", "where"), [
    ("", "only in the HTTP header Idempotency-Key"),
    (", idempotency: {header: null}", "nowhere"),
])
def test_validate_warns_about_a_soap_target_without_an_idempotency_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], idempotency: str, where: str,
) -> None:
    config = tmp_path / "silobridge.yaml"
    config.write_text(CONFIG.format(idempotency=idempotency), encoding="utf-8")
    assert main(["validate", "-c", str(config)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("warning:")]
    # one warning, for the route without the argument; the other route is protected
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: route nav-customers: the SOAP target Create gets "
                                  "no idempotency key in the message")
    assert where in warnings[0]
    assert "Targets without an idempotency key" in warnings[0]

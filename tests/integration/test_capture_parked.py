"""Issue 15, item 1: a delivery the target accepted is never delivered again, even when storing
the cross-reference from its answer fails.

The ERP accepts a create and answers an account id; the capture then hits a one-to-one
conflict (the customer is already linked to another account). Before, the message was
dead-lettered as a permanent failure and `dlq replay` called the ERP a second time. Now the
delivery stands (its idempotency record is kept), a copy marked as accepted waits in the DLQ,
`dlq replay` refuses it, and neither a resend of the same event nor a restart reaches the ERP
again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml
from starlette.requests import Request
from starlette.responses import Response

from middleware import headers
from middleware.broker import dlq
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.envelope import Envelope
from middleware.stores import open_stores
from tests.integration.helpers import publish_sentinel, queue_count, wait_until
from tests.integration.rest_helpers import Peer, json_response

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAPPING = """\
mapping: capture-parked
fields:
  customer_no: {from: customer_no}
capture: [{xref: crm.customer -> erp.account, source: customer_no, response: account_id}]
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "middleware", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=dict(os.environ))


def test_accepted_delivery_with_a_failing_capture_is_delivered_exactly_once(
    amqp_url: str, prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig],
) -> None:
    # Given an ERP that creates an account for every call, and a customer already linked to
    # another account (so the capture of the new one conflicts)
    async def create(request: Request, body: bytes) -> Response:
        payload = orjson.loads(body)
        return json_response({"account_id": f"A-NEW-{payload['customer_no']}"}, 201)

    (tmp_path / "m.yaml").write_text(MAPPING)
    route = f"{prefix}-r"
    with Peer(create) as erp:
        loaded = make_config([{
            "name": route, "bind": [f"{prefix}.customer.*"], "mapping": str(tmp_path / "m.yaml"),
            "target": {"type": "rest", "url": f"{erp.url}/accounts"},
        }])
        stores = open_stores(loaded.config.store)
        stores.xref.link("crm.customer", "C-1", "erp.account", "A-OLD")
        stores.close()
        event = Envelope.new(source="crm/test", type=f"{prefix}.customer.created",
                             subject="C-1", data={"customer_no": "C-1"})

        def calls() -> int:
            return len(erp.calls("/accounts"))

        daemon = Daemon(loaded, Role.WORKER)
        daemon.start()
        try:
            assert wait_until(lambda: all(daemon.readiness().values()), 10)
            # When the event is delivered
            _publish(daemon, event)
            # Then the ERP was called once and the capture failure waits in the DLQ, marked
            assert wait_until(lambda: queue_count(amqp_url, dlq_name(route)) == 1, 15)
            assert calls() == 1
            [letter] = dlq.browse(loaded.config.broker, dlq_name(route))
            assert letter.message_id == event.id
            assert letter.headers[headers.ACCEPTED] == "true"
            assert letter.headers[headers.STAGE] == "capture"
            assert letter.reason.startswith("target accepted; capture failed:")
            assert "A-OLD" in letter.reason and "xref unlink" in letter.reason
            # When the operator replays it: refused, the ERP is not called again
            replay = _cli("dlq", "replay", route, "--all", "-c", str(loaded.path))
            assert replay.returncode == 1
            assert f"the target already accepted {event.id}" in replay.stderr
            assert queue_count(amqp_url, dlq_name(route)) == 1
            # When the same event arrives again (a resend): deduped by the kept record
            _publish(daemon, event)
            publish_sentinel(amqp_url, prefix)
            assert wait_until(lambda: calls() == 2, 15)  # the sentinel reached the ERP
            first = erp.calls("/accounts")[0]
            assert orjson.loads(first[3])["customer_no"] == "C-1"
        finally:
            daemon.stop()
        # When every process is replaced, nothing is delivered again either
        again = Daemon(loaded, Role.WORKER)
        again.start()
        try:
            assert wait_until(lambda: all(again.readiness().values()), 10)
            publish_sentinel(amqp_url, prefix)
            assert wait_until(lambda: calls() == 3, 15)
            assert [orjson.loads(c[3])["customer_no"] for c in erp.calls("/accounts")].count(
                "C-1") == 1
        finally:
            again.stop()
        # And once the link is fixed, the letter is dropped
        dropped = _cli("dlq", "drop", route, "--id", event.id, "-c", str(loaded.path))
        assert dropped.returncode == 0, dropped.stderr
        assert queue_count(amqp_url, dlq_name(route)) == 0


def _publish(daemon: Daemon, event: Envelope) -> None:
    from middleware.broker.ingest import publish_envelopes

    publish_envelopes(daemon.publisher, [event], timeout=10)


def test_dlq_drop_of_an_unknown_id_says_so(
    make_config: Callable[..., LoadedConfig], prefix: str,
) -> None:
    loaded = make_config([{"name": f"{prefix}-r", "bind": [f"{prefix}.x.*"],
                           "target": {"type": "amqp", "exchange": f"{prefix}.out",
                                      "routing_key": "x"}}])
    assert _cli("topology", "apply", "-c", str(loaded.path)).returncode == 0
    done = _cli("dlq", "drop", f"{prefix}-r", "--id", "nope", "-c", str(loaded.path))
    assert done.returncode == 1 and "not found in the DLQ: nope" in done.stderr
    assert yaml.safe_load(loaded.path.read_text())["routes"][0]["name"] == f"{prefix}-r"

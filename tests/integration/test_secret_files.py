"""A webhook secret from a file (a mounted Kubernetes Secret), over real HTTP and the real broker.

The endpoint's HMAC secret and the rotation's previous secret are files beside the config; a
request signed with either is accepted and published, a wrong signature is refused, and the
secret values appear in no log line, even at debug level.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from middleware.broker.topology import queue_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.log import configure_logging
from tests.integration.helpers import queue_count, wait_until
from tests.integration.rest_helpers import catch_all_route, endpoint, hmac_hex

pytestmark = pytest.mark.integration

SECRET, PREVIOUS = "file-secret-4b1d7e", "file-secret-previous-93c0aa"


def test_rest_endpoint_hmac_secret_from_a_file_accepts_signed_requests_and_never_logs_it(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig], tmp_path: Path,
) -> None:
    # Given the secrets as files beside the config (make_config writes it into tmp_path), with
    # the trailing newline a file written by hand has, named by relative paths
    (tmp_path / "hook-secret").write_text(SECRET + "\n")
    (tmp_path / "hook-secret-previous").write_text(PREVIOUS + "\n")
    out = io.StringIO()
    configure_logging(json=True, level="debug", stream=out)
    auth = {"scheme": "hmac", "header": "X-Signature", "prefix": "sha256=",
            "secret_file": "hook-secret", "previous_secret_file": "hook-secret-previous"}
    loaded = make_config([catch_all_route(prefix)],
                         inbound=[endpoint(prefix, "filehook", auth=auth)])
    daemon = Daemon(loaded, Role.INGRESS)
    try:
        daemon.start()
        assert daemon.ingress is not None
        url = f"http://127.0.0.1:{daemon.ingress.port}/hooks/{prefix}/filehook"
        body = b'{"customer_no": "C-1001"}'

        def post(secret: str, data: bytes = body) -> httpx.Response:
            return httpx.post(url, content=data, headers={
                "Content-Type": "application/json",
                "X-Signature": f"sha256={hmac_hex(secret, body)}"})

        def published() -> int:
            return queue_count(amqp_url, queue_name(f"{prefix}-r"))

        # When requests are signed with the file's secret, the previous one, and a wrong one
        good = post(SECRET)
        assert good.status_code == 202, good.text
        assert wait_until(lambda: published() == 1, 5)
        rotated = post(PREVIOUS)
        assert rotated.status_code == 202, rotated.text
        assert wait_until(lambda: published() == 2, 5)
        wrong = post("not-the-secret")
        assert wrong.status_code == 401
        tampered = post(SECRET, body + b" ")
        assert tampered.status_code == 401
        assert published() == 2
    finally:
        daemon.stop()
        configure_logging(json=True, level="warning")
    # Then the logs tell the story without either secret
    logged = out.getvalue()
    assert '"REST endpoint ready"' in logged and '"webhook rejected"' in logged
    assert SECRET not in logged and PREVIOUS not in logged

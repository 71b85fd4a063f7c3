"""Mapping hot reload in a running daemon on the real broker.

A stream of events keeps flowing while the mapping file is edited: once picked up by the file
watcher, once by SIGHUP (``Daemon.reload_mappings``), and once broken. Every event must come out
exactly once, mapped by the version in force, and the broken edit must leave the last good
mapping working, with a failure counted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon
from tests.integration.helpers import (
    counter,
    publish_events,
    publish_sentinel,
    queue_count,
    take_until,
    wait_until,
    waiting,
)

pytestmark = pytest.mark.integration

MAPPING = "mapping: hot\nfields:\n  customer_no: customer_no\n  version: {{value: {v}}}\n"
BATCH = 20  # events the publisher sends (and appends to ``published``) at a time
BROKEN = "mapping: hot\nfields:\n  customer_no: {from: customer_no, transform: [uper]}\n"


def save(path: Path, text: str) -> None:
    """Save as editors do: write aside, then rename over the file in one step."""
    aside = path.with_suffix(".tmp")
    aside.write_text(text)
    os.replace(aside, path)


def test_mapping_hot_reload_keeps_every_message_once_and_rejects_bad_edit(
    amqp_url: str, prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    # Given a daemon mapping with version 1 of a mapping file
    mapping = tmp_path / "hot.yaml"
    mapping.write_text(MAPPING.format(v=1))
    loaded = make_config([{
        "name": f"{prefix}-r", "bind": [f"{prefix}.customer.*"], "mapping": "hot.yaml",
        "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "erp.account",
                   "queue": f"{prefix}.out"},
    }])
    daemon = run_daemon(loaded)
    published: list[str] = []
    stop = threading.Event()

    def publish_steadily() -> None:
        while not stop.is_set():
            published.extend(publish_events(amqp_url, prefix, BATCH))
            time.sleep(0.05)

    publisher = threading.Thread(target=publish_steadily)
    publisher.start()
    try:
        # When version 2 is saved, the file watcher picks it up while messages flow
        assert wait_until(lambda: len(published) >= 100, 20)
        successes = counter("silobridge_mapping_reloads_total", outcome="success")
        save(mapping, MAPPING.format(v=2))
        assert wait_until(lambda: counter("silobridge_mapping_reloads_total",
                                          outcome="success") > successes, 10)
        picked_up = len(published)
        assert wait_until(lambda: len(published) >= picked_up + 100, 20)
        # and version 3 arrives by SIGHUP
        save(mapping, MAPPING.format(v=3))
        daemon.reload_mappings()
        # The batch of 20 the publisher may have been sending meanwhile is appended after
        # this line though part of it was mapped before the reload (seen on a slow machine):
        # version 3 is asserted from the batch after it.
        reloaded_at = len(published) + BATCH
        # and then a broken edit is rejected by SIGHUP, keeping version 3
        failures = counter("silobridge_mapping_reloads_total", outcome="failure")
        save(mapping, BROKEN)
        daemon.reload_mappings()
        assert counter("silobridge_mapping_reloads_total", outcome="failure") == failures + 1
        broken_at = len(published)
        assert wait_until(lambda: len(published) >= broken_at + 100, 20)
    finally:
        stop.set()
        publisher.join()

    # Then every event comes out exactly once (counted ahead of a sentinel published behind
    # them), mapped by the version in force
    assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= len(published), 60)
    sentinel = publish_sentinel(amqp_url, prefix)
    out = take_until(amqp_url, f"{prefix}.out", lambda props, _: props.message_id == sentinel)
    assert waiting(amqp_url, f"{prefix}-r", 3) == {}
    assert sorted(props.message_id for props, _ in out) == sorted(published)
    version = {props.message_id: orjson.loads(body)["data"]["version"] for props, body in out}
    assert set(version.values()) == {1, 2, 3}
    assert all(version[i] == 3 for i in published[reloaded_at:])
    assert all(orjson.loads(body)["data"]["customer_no"].startswith("C-") for _, body in out)

"""Issue 11.1: a daemon whose broker loop thread dies exits non-zero instead of idling on.

The cause is real: an exception escapes a callback on the broker loop, as one from pika's own code
would (ours are all guarded). The test only schedules that callback, in the child process, once
the daemon has started; ``silobridge run`` is otherwise the real command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from middleware.config.loader import LoadedConfig
from middleware.watchdog import EXIT_CODE
from tests.integration.rest_helpers import catch_all_route

pytestmark = pytest.mark.integration

_CHILD = textwrap.dedent("""
    import sys
    from middleware.cli import main
    from middleware.daemon import Daemon

    start = Daemon.start

    def start_then_break_the_loop(self):
        start(self)
        def boom():
            raise RuntimeError("escaped from a loop callback, card 4111 1111 1111 1111")
        self.broker.loop.ioloop.call_soon_threadsafe(boom)  # past the guards, as pika could

    Daemon.start = start_then_break_the_loop
    sys.exit(main(["run", "-c", sys.argv[1], "--log-format", "json"]))
""")


def test_daemon_whose_loop_thread_dies_exits_with_the_watchdog_code(
    prefix: str, make_config: Callable[..., LoadedConfig],
) -> None:
    loaded = make_config([catch_all_route(prefix)])
    child = subprocess.run([sys.executable, "-c", _CHILD, str(loaded.path)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == EXIT_CODE, child.stderr[-3000:]
    # every line on stderr is a JSON log line: no raw traceback, and the card is masked
    lines = [json.loads(line) for line in child.stderr.splitlines() if line.strip()]
    died = [line for line in lines if line["event"] == "thread ended by an exception"]
    assert died and died[0]["thread"] == "amqp-loop"
    assert "RuntimeError" in died[0]["exception"]
    assert "4111 1111 1111 1111" not in child.stderr
    tripped = [line for line in lines if line["event"].startswith("a long-lived thread died")]
    assert tripped[0]["reason"] == "thread amqp-loop died: RuntimeError"
    assert any(line["event"] == "silobridge stopped" for line in lines)

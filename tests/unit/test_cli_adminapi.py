"""The CLI's rule for a daemon's admin API that takes a request and never answers: a read falls
back to the store, a change does not (the daemon may have made it), against a real loopback
server that hangs up after reading the request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from middleware.cli import main
from middleware.cli.adminapi import TOKEN_ENV
from middleware.config.models import StoreConfig
from middleware.console.store import open_console_store


@pytest.fixture
def hangs_up() -> Iterator[str]:
    """An HTTP address whose server reads each request and closes without a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = listener.getsockname()
    yield f"http://127.0.0.1:{address[1]}"
    stop.set()
    socket.create_connection(address, timeout=5).close()  # wakes the accept to see stop
    thread.join(5)
    listener.close()
    assert not thread.is_alive()


def test_cli_change_without_an_answer_fails_and_is_not_made_again_directly(
    hangs_up: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_path = tmp_path / "store.db"
    config = tmp_path / "silobridge.yaml"
    config.write_text(f"store: {{path: {store_path}}}\n")
    store = open_console_store(StoreConfig(kind="sqlite", path=str(store_path)))
    store.add_user("bob", None, "viewer")
    store.close()
    monkeypatch.setenv(TOKEN_ENV, "sbt_not-checked-here")

    assert main(["users", "remove", "bob", "-c", str(config), "--api", hangs_up]) == 1
    out, err = capsys.readouterr()
    assert "took the request but gave no answer" in err and "may have made" in err
    assert "using the store" not in err and out == ""

    # a read is safe to repeat: it falls back, and shows bob was not removed the direct way
    assert main(["users", "list", "-c", str(config), "--api", hangs_up]) == 0
    out, err = capsys.readouterr()
    assert "cannot be reached" in err and "using the store directly" in err
    assert out == "bob\tviewer\t*\n"

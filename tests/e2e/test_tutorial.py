"""docs/tutorial.md, executed: its files written and its commands run, in order, in an empty
directory, against the real RabbitMQ and the demo SOAP ERP, so the tutorial cannot rot.

The tutorial marks what to execute in the info string of its fenced blocks (GitHub shows only
the first word):

- ```` ```yaml file=PATH ```` (any language): write the block to PATH;
- ```` ```sh ````: run it with ``bash -eu``; it must exit 0 (``exit=N``: exit N);
- ```` ```sh wait ````: run it again until it exits 0 and its output matches (what a reader does
  who looks twice; delivery is asynchronous);
- ```` ```sh terminal=NAME ready=URL ````: start it in the background (a reader's second
  terminal) and go on once URL answers 200; stopped at the end;
- ```` ```text output ````: every line must match a line of what the command before printed
  (standard output and error), whitespace runs compared as one space, ``…`` for any text.

Blocks with other info strings (``pip install``) are for the reader only. Two substitutions
keep a run from meeting anyone else's on the shared broker and ports: the word ``crm`` (the
system, so event types, route and queue names) becomes a name unique to the run (starting with
``crm``, so ``xref show`` orders the link's two sides as the tutorial shows), and the
tutorial's ports become free ones.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pika
import pytest

from middleware.broker.topology import dlq_name, queue_name, retry_name
from middleware.config.models import RetryPolicy
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
PORTS = ("8080", "8090", "9080")
ROUTES = ("crm-contacts", "crm-contact-changes")
WAIT_SECONDS = 45.0


@dataclass
class Step:
    """One executable block of the tutorial (a file, a command, or a background command)."""

    kind: str  # "file" | "run" | "background"
    text: str
    path: str = ""
    wait: bool = False
    exit: int = 0
    ready: str = ""
    expect: list[str] = field(default_factory=list)


def steps(markdown: str) -> list[Step]:
    """The tutorial's executable blocks in order, each command with its expected output."""
    found: list[Step] = []
    for match in FENCE.finditer(markdown):
        words = match.group(1).split()
        body = match.group(2)
        attrs = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        if "file" in attrs:
            found.append(Step("file", body, path=attrs["file"]))
        elif words[:1] == ["sh"] and "terminal" in attrs:
            found.append(Step("background", body, ready=attrs["ready"]))
        elif words[:1] == ["sh"]:
            found.append(Step("run", body, wait="wait" in words[1:],
                              exit=int(attrs.get("exit", "0"))))
        elif words[:2] == ["text", "output"]:
            assert found and found[-1].kind == "run", "an output block follows a command"
            found[-1].expect += [line for line in body.splitlines() if line.strip()]
    return found


def _squash(line: str) -> str:
    return " ".join(line.split())


def missing_lines(expected: list[str], output: str) -> list[str]:
    """Expected lines that match no line of output (``…`` matches any text)."""
    actual = [_squash(line) for line in output.splitlines()]
    missing = []
    for line in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in _squash(line).split("…")))
        if not any(pattern.fullmatch(candidate) for candidate in actual):
            missing.append(line)
    return missing


class Reader:
    """Does what the tutorial says, in one directory, with the tutorial's tools on PATH."""

    def __init__(self, workdir: Path, amqp_url: str) -> None:
        self.workdir = workdir
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("SILOBRIDGE_") and key not in ("ERP_URL", "CRM_URL",
                                                                           "INGRESS_URL")}
        self.env.update(AMQP_URL=amqp_url, NO_COLOR="1",
                        PATH=f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}")
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []

    def do(self, step: Step) -> None:
        if step.kind == "file":
            target = self.workdir / step.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.text + "\n", encoding="utf-8")
        elif step.kind == "background":
            self.start(step)
        else:
            self.run(step)

    def start(self, step: Step) -> None:
        log = self.workdir / f"terminal-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(["bash", "-euc", step.text], cwd=self.workdir,
                                       env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.background.append((process, log))
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{step.text!r} ended:\n{log.read_text()}"
            try:
                if httpx.get(step.ready, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{step.ready} did not answer 200:\n{log.read_text()}")

    def run(self, step: Step) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            done = subprocess.run(["bash", "-euc", step.text], cwd=self.workdir, env=self.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
            output = done.stdout.decode("utf-8", "replace")
            missing = missing_lines(step.expect, output)
            if done.returncode == step.exit and not missing:
                return
            if not step.wait or time.monotonic() > deadline:
                raise AssertionError(
                    f"{step.text!r} exited {done.returncode} (tutorial: {step.exit}); lines "
                    f"not printed: {missing}\n--- output:\n{output}\n--- logs:\n{self.logs()}")
            time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(f"[{log.name}]\n{log.read_text()[-4000:]}" for _, log in self.background)

    def stop(self) -> None:
        for process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.background:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture
def system(amqp_url: str, prefix: str) -> Iterator[str]:
    """The run's own system word; the queues of its routes are removed afterwards."""
    word = f"crm{prefix}"
    yield word
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    tiers = len(RetryPolicy().delays())
    for route in ROUTES:
        name = route.replace("crm", word)
        for queue in [queue_name(name), dlq_name(name),
                      *(retry_name(name, n) for n in range(1, tiers + 1))]:
            channel.queue_delete(queue)
    connection.close()


def test_tutorial_covers_the_integrators_path() -> None:
    commands = "\n".join(step.text for step in steps(TUTORIAL.read_text(encoding="utf-8"))
                         if step.kind != "file")
    for command in ("silobridge demo erp", "silobridge mapping test", "silobridge validate",
                    "silobridge run", "python send_webhook.py", "silobridge xref show",
                    "silobridge status", "silobridge dlq list", "silobridge dlq show",
                    "silobridge dlq replay"):
        assert command in commands, f"docs/tutorial.md no longer runs {command!r}"


def test_tutorial_runs_as_written(tmp_path: Path, amqp_url: str, system: str) -> None:
    text = re.sub(r"\bcrm\b", system, TUTORIAL.read_text(encoding="utf-8"))
    ports = {port: str(free_port()) for port in PORTS}
    text = re.sub(r"\b(" + "|".join(PORTS) + r")\b", lambda m: ports[m.group(1)], text)
    reader = Reader(tmp_path, amqp_url)
    try:
        for step in steps(text):
            reader.do(step)
        # Then the ERP holds both accounts, the update applied through the captured link, and
        # the replayed dead letter reached it exactly once (its first delivery never did).
        state = httpx.get(f"http://127.0.0.1:{ports['8090']}/state", timeout=5).json()
    finally:
        reader.stop()
    assert {number: (account["AccountId"], account["Country"])
            for number, account in state["accounts"].items()} == {
        "CRM-1001": ("AC-000001", "AT"), "CRM-1002": ("AC-000002", "PT")}
    assert state["calls"] == [["UpsertAccount", "msg_0001"], ["UpdateAccount", "msg_0002"],
                              ["UpsertAccount", "msg_0003"]]

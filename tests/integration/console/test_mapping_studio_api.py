"""The mapping studio's API on a running daemon: links written into the YAML with its comments,
the CLI's ``mapping test`` passing on the saved file, the daemon mapping the next event with it,
a broken text refused with the CLI's problems (file untouched), and the save audited."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from middleware.cli import main
from middleware.config.loader import LoadedConfig
from middleware.console.auth import Authenticator
from middleware.daemon import Daemon
from tests.integration.console.conftest import password_hash
from tests.integration.helpers import counter, drain, publish_events, queue_count, wait_until

pytestmark = pytest.mark.integration

SOURCE = {"type": "object", "properties": {
    "customer_no": {"type": "string"}, "name": {"type": "string"}, "n": {"type": "integer"},
    "email": {"type": "string"}}}
TARGET = {"type": "object", "properties": {
    "code": {"type": "string"}, "full_name": {"type": "string"}, "number": {"type": "integer"},
    "mail": {"type": "string"}}}
MAPPING = """# Studio test mapping: keep this comment
mapping: studio
source: {schema: source.json}
target: {schema: target.json}
fields:
  code: customer_no   # the business key
"""
CASES = """cases:
  - name: every field is mapped
    input: {customer_no: C-1, name: Ana, n: 1, email: a@example.org}
    expect: {code: C-1, full_name: Ana, number: 1, mail: a@example.org}
"""


def write_studio(folder: Path) -> Path:
    folder.mkdir()
    (folder / "source.json").write_text(json.dumps(SOURCE))
    (folder / "target.json").write_text(json.dumps(TARGET))
    (folder / "studio.yaml").write_text(MAPPING)
    (folder / "studio.test.yaml").write_text(CASES)
    return folder / "studio.yaml"


def test_console_studio_links_save_test_and_hot_reload(
    amqp_url: str, prefix: str, tmp_path: Path, make_config: Callable[..., LoadedConfig],
    run_daemon: Callable[[LoadedConfig], Daemon],
) -> None:
    mapping = write_studio(tmp_path / "studio")
    route = f"{prefix}-r"
    loaded = make_config([{
        "name": route, "bind": [f"{prefix}.customer.*"], "mapping": "studio/studio.yaml",
        "target": {"type": "amqp", "exchange": f"{prefix}.out", "routing_key": "erp.account",
                   "queue": f"{prefix}.out"}}],
        console={"enabled": True, "port": 0, "secure_cookies": False})
    daemon = run_daemon(loaded)
    assert daemon.console is not None
    daemon.console.store.add_user("ivy", password_hash(), "integrator")
    daemon.console.store.add_user("olga", password_hash(), "operator")
    auth = Authenticator(daemon.console.store, loaded.config.console)
    ivy = httpx.Client(base_url=f"http://127.0.0.1:{daemon.console.port}", timeout=30,
                       headers={"Authorization": f"Bearer {auth.issue_token('ivy', 't')}"})
    olga_token = auth.issue_token("olga", "t")
    base = f"/api/v1/routes/{route}/mapping"
    with ivy:
        shown = ivy.get(base).json()
        assert shown["source_fields"] == ["customer_no", "name", "n", "email"]
        assert shown["target_fields"] == ["code", "full_name", "number", "mail"]
        assert shown["fields"] == {"code": {"from": "customer_no"}}
        # the saved mapping fails its own test case, and a preview shows why
        [failing] = ivy.post(f"{base}/test", json={}).json()["results"]
        assert not failing["ok"]
        preview = ivy.post(f"{base}/preview", json={"input": {"customer_no": "C-9"}}).json()
        assert preview == {"output": {"code": "C-9"}}
        # a broken text is refused with the CLI's problem and the file stays as it was
        broken = ivy.put(base, json={"yaml": MAPPING + "  full_name: {from: name, transform: "
                                             "[uper]}\n"})
        assert broken.status_code == 422 and "uper" in broken.text
        assert mapping.read_text() == MAPPING
        # an operator may not touch mappings
        assert httpx.put(f"{ivy.base_url}{base}", json={"links": []},
                         headers={"Authorization": f"Bearer {olga_token}"}).status_code == 403
        # When three fields are linked and saved
        reloads = counter("silobridge_mapping_reloads_total", outcome="success")
        links = [{"target": "full_name", "source": "name"}, {"target": "number", "source": "n"},
                 {"target": "mail", "source": "email"}]
        saved = ivy.put(base, json={"links": links})
        assert saved.status_code == 200, saved.text
    # Then the file keeps its comments and passes the CLI's mapping test
    text = mapping.read_text()
    assert "# Studio test mapping: keep this comment" in text and "# the business key" in text
    assert "full_name: name" in text and "mail: email" in text
    assert main(["mapping", "test", str(mapping.parent)]) == 0
    # and the daemon maps the next event with it
    assert wait_until(lambda: counter("silobridge_mapping_reloads_total", outcome="success")
                      > reloads, 15)
    publish_events(amqp_url, prefix, 1)
    assert wait_until(lambda: queue_count(amqp_url, f"{prefix}.out") >= 1, 15)
    [(_props, body)] = drain(amqp_url, f"{prefix}.out")
    delivered = json.loads(body)
    delivered = delivered.get("data", delivered)
    assert delivered["code"] == "C-0" and delivered["number"] == 0  # 'number' is a new link
    # and the audit log holds the save with the text before and after
    entries = daemon.console.store.audit_records(10, 0, action="mapping.save")
    assert len(entries) == 1 and entries[0].actor == "ivy"
    assert json.loads(entries[0].before or "null") == MAPPING

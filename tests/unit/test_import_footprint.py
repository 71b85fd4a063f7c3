"""What a daemon process imports: the CEL engine without the package's command line, and no
protocol library of an adapter a config does not use (a fresh interpreter each: the point is
what an import leaves in ``sys.modules``, and so in every process's resident memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

CLI_PACKAGES = ("typer", "prompt_toolkit", "cel.cli")


def _run(code: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_daemon_loads_cel_without_its_command_line() -> None:
    result = _run(
        "import json, sys\n"
        "import middleware.daemon\n"
        "from middleware.celengine import cel\n"
        f"cli = [m for m in sys.modules if m.split('.')[0] in {CLI_PACKAGES[:2]!r} "
        f"or m == {CLI_PACKAGES[2]!r}]\n"
        "print(json.dumps({'cli': cli, 'value': cel.compile('a.b + 1').execute({'a': {'b': 2}}),"
        " 'module': cel.__name__}))\n")
    assert result == {"cli": [], "value": 3, "module": "cel.cel"}


def test_the_package_imports_after_the_engine_and_shares_it() -> None:
    result = _run(
        "import json\n"
        "from middleware.celengine import cel as engine\n"
        "import cel\n"
        "print(json.dumps({'same': cel.compile is engine.compile"
        " and cel.OptionalValue is engine.OptionalValue,"
        " 'value': cel.compile('[1, 2].size()').execute({})}))\n")
    assert result == {"same": True, "value": 2}


def test_registered_adapters_import_their_libraries_only_when_built() -> None:
    heavy = ("zeep", "lxml", "requests", "psycopg", "pymysql")
    result = _run(
        "import json, sys\n"
        "import middleware.daemon\n"
        "from middleware import plugins\n"
        "types = plugins.known_types()\n"
        f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))\n"
        "plugins.get('soap').outbound_config\n"
        "from adapters.soap.enrich import SoapSystem\n"
        "after = sorted({m.split('.')[0] for m in sys.modules} & {'zeep', 'lxml'})\n"
        "print(json.dumps({'types': types, 'loaded': loaded, 'after': after}))\n")
    assert {"soap", "salesforce-om", "sql", "rest", "amqp"} <= set(result["types"])
    assert result["loaded"] == []
    assert result["after"] == ["lxml", "zeep"]  # the check above can see them


def test_certificates_and_tokens_load_their_libraries_when_first_read() -> None:
    result = _run(
        "import json, sys\n"
        "import middleware.daemon\n"
        "def loaded(): return sorted({m.split('.')[0] for m in sys.modules}"
        " & {'cryptography', 'joserfc'})\n"
        "before = loaded()\n"
        "from middleware.tls.names import parse_subject\n"
        "name = parse_subject('CN=client.example.com,O=Example').rfc4514_string()\n"
        "parsed = loaded()\n"
        "del sys.modules['cryptography.x509']\n"
        "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol\n"
        "from middleware.tls import with_peer_certificate\n"
        "with_peer_certificate(HttpToolsProtocol)\n"
        "print(json.dumps({'before': before, 'parsed': parsed, 'name': name,"
        " 'https_server': 'cryptography.x509' in sys.modules}))\n")
    # and an HTTPS server loads it as it is built, not on its event loop at the first client
    assert result == {"before": [], "parsed": ["cryptography"],
                      "name": "CN=client.example.com,O=Example", "https_server": True}


def test_the_engine_falls_back_to_the_package_and_reuses_one_loaded_first() -> None:
    result = _run(
        "import importlib.machinery, json, sys\n"
        "importlib.machinery.EXTENSION_SUFFIXES[:] = []  # another layout: no extension found\n"
        "from middleware.celengine import _load, cel as fallback\n"
        "print(json.dumps({'fallback': fallback.__name__, 'works': fallback.compile('1 + 1')"
        ".execute({}), 'reused': _load() is sys.modules['cel.cel']}))\n")
    assert result == {"fallback": "cel", "works": 2, "reused": True}

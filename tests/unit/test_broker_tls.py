"""connection_parameters for amqps://: what it verifies and how it reports unusable TLS files.

Handshakes against a real TLS broker are in tests/integration/test_amqps.py; these tests check
the client side without a network.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import pydantic
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from middleware.broker.rabbitmq.connection import connection_parameters
from middleware.config.models import BrokerConfig

URL = "amqps://guest:guest@127.0.0.1:5671/%2F"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    client = ca.issue_cert("silobridge-client")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "client.pem",
             "key": tmp_path / "client.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    return {name: str(path) for name, path in paths.items()}


def _context(broker: BrokerConfig) -> tuple[ssl.SSLContext, str | None]:
    options = connection_parameters(broker, "test").ssl_options
    assert options is not None
    return options.context, options.server_hostname


def test_connection_parameters_amqps_verifies_chain_and_host_with_tls_1_2_or_later(
    files: dict[str, str],
) -> None:
    context, hostname = _context(BrokerConfig(url=URL, tls={"ca_file": files["ca"]}))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert hostname == "127.0.0.1"  # the URL host is what the certificate must name
    assert len(context.get_ca_certs()) == 1


def test_connection_parameters_server_hostname_overrides_the_url_host(
    files: dict[str, str],
) -> None:
    broker = BrokerConfig(url=URL, tls={"ca_file": files["ca"], "server_hostname": "mq.example"})
    assert _context(broker)[1] == "mq.example"


def test_connection_parameters_plain_amqp_has_no_tls() -> None:
    params = connection_parameters(BrokerConfig(url="amqp://127.0.0.1:5672/%2F"), "test")
    assert params.ssl_options is None


def test_connection_parameters_reads_tls_files_once_not_on_every_reconnect(
    files: dict[str, str],
) -> None:
    # Given parameters built once (at start, off the broker loop)
    broker = BrokerConfig(url=URL, tls={"ca_file": files["ca"], "cert_file": files["cert"],
                                        "key_file": files["key"]})
    first, _ = _context(broker)
    # When the files go away and a reconnect on the broker loop builds parameters again
    for path in files.values():
        Path(path).unlink()
    again, _ = _context(broker)
    # Then no file was read: the same context is used
    assert again is first


def test_connection_parameters_missing_ca_file_names_setting_and_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(OSError, match=r"broker\.tls\.ca_file .*nope\.pem: No such file") as exc:
        connection_parameters(BrokerConfig(url=URL, tls={"ca_file": missing}), "test")
    assert "CA that signed the broker's certificate" in str(exc.value)


def test_connection_parameters_ca_file_that_is_not_pem_is_explained(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(OSError, match=r"broker\.tls\.ca_file .*ca\.pem: .*NO_CERTIFICATE"):
        connection_parameters(BrokerConfig(url=URL, tls={"ca_file": str(junk)}), "test")


def test_connection_parameters_encrypted_key_is_an_error_not_a_terminal_prompt(
    ca: trustme.CA, files: dict[str, str], tmp_path: Path
) -> None:
    # Given a client key encrypted with a passphrase (OpenSSL would ask for it on the terminal)
    key = serialization.load_pem_private_key(Path(files["key"]).read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"secret")))
    broker = BrokerConfig(url=URL, tls={"cert_file": files["cert"], "key_file": str(encrypted)})
    # When parameters are built (in a thread: a prompt would block)
    errors: list[BaseException] = []

    def build() -> None:
        try:
            connection_parameters(broker, "test")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    thread.join(10)
    # Then it fails at once, naming both files and why
    assert not thread.is_alive(), "blocked, presumably on a pass phrase prompt"
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    assert "encrypted" in str(errors[0]) and "encrypted.key" in str(errors[0])
    assert "broker.tls.cert_file" in str(errors[0])


def test_tls_config_key_file_without_cert_file_is_rejected(files: dict[str, str]) -> None:
    with pytest.raises(pydantic.ValidationError, match="key_file is set without cert_file"):
        BrokerConfig(url=URL, tls={"key_file": files["key"]})

"""A started zeep client for one SOAP service: what the SOAP target and SOAP enrich steps share.

The WSDL is read from a local file at start, and service, port and address are resolved then, so
every configuration mistake stops the start with the file named. Auth (HTTP basic, WS-Security
UsernameToken), TLS, timeouts, masked logging and the classification of what a failed call means
(``adapters.soap.classify``) are set up here once; a target calls one operation with the mapped
payload, an enrich step calls another (NAV's ``Read``) to fetch what the payload lacks.

``tls`` goes to requests as paths (``verify`` = the private CA, ``cert`` = the client
certificate and key), checked by loading them once at start, and is set on the connection
adapter rather than the session: requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``
override a session's ``verify``, which would silently drop the private CA.

``transports`` is a test seam: requests transport adapters mounted by URL prefix on the
session, so the unit tier reaches a peer on a unix socket without TCP.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from zeep import Client, Plugin
from zeep.proxy import ServiceProxy
from zeep.wsse.username import UsernameToken

from adapters._http import without_frames
from adapters.soap.classify import classify
from adapters.soap.config import SoapClientConfig
from adapters.soap.deadline import DeadlineAdapter
from adapters.soap.values import plain
from adapters.soap.wsdl import (
    LocalTransport,
    MaskedLogPlugin,
    ResponseTooLarge,
    WssePlugin,
    load_client,
)
from middleware.config.models import TargetTlsConfig
from middleware.errors import ConfigError, DeliveryError, Problem
from middleware.secrets import require_secret
from middleware.tls import describe_tls_failure, target_context
from middleware.yamlfile import did_you_mean

__all__ = ["SoapService", "open_service", "resolve"]


class SoapService:
    """Calls operations of the bound port; every failure comes out as a DeliveryError."""

    def __init__(self, client: Client, service: ServiceProxy, session: requests.Session,
                 operations: dict[str, Any], wsdl: Path, binding: str) -> None:
        self._client = client
        self._service = service
        self._session = session
        self.operations = operations
        """The binding's operations by name (zeep objects; ``argument_names`` reads them)."""
        self.wsdl = wsdl
        self.binding = binding
        transport = client.transport
        assert isinstance(transport, LocalTransport)
        self._transport = transport

    def check_operation(self, operation: str, where: str) -> None:
        """A ConfigError naming what the port has, when it has no such operation."""
        if operation not in self.operations:
            raise ConfigError([Problem(str(self.wsdl), None, where,
                                       f"no operation {operation!r} in {self.binding}"
                                       f"{did_you_mean(operation, self.operations)}; has "
                                       f"{', '.join(sorted(self.operations))}")])

    def argument_names(self, operation: str) -> list[str] | None:
        """Top-level argument names of a document/literal operation; None when not that shape."""
        try:
            return [str(name) for name, _element in
                    self.operations[operation].input.body.type.elements]
        except AttributeError:
            return None

    def call(self, operation: str, arguments: dict[str, Any],
             headers: dict[str, str] | None = None) -> Any:
        """Call and return the answer as plain dicts and lists (blocking: run it on a pool)."""
        try:
            with self._client.settings(extra_http_headers=headers or {}):
                result = self._service[operation](**arguments)
        except ResponseTooLarge as exc:
            raise DeliveryError(f"{operation} answered more than {exc.limit} bytes; raise "
                                f"max_response_bytes if the record really is that large",
                                retryable=False, details={"operation": operation}) from exc
        except Exception as exc:  # translated at the boundary: the pipeline sees DeliveryError
            problem = describe_tls_failure(exc)
            if problem is not None:  # retried: a peer's certificate can be fixed in time
                raise DeliveryError(f"SOAP call {operation} failed: {problem}", retryable=True,
                                    details={"error": "tls"}) from without_frames(exc)
            raise classify(exc, operation, self._transport.last_status()
                           ) from without_frames(exc)
        return plain(result)

    def close(self) -> None:
        self._session.close()


def open_service(config: SoapClientConfig, base_dir: Path, where: str,
                 transports: Mapping[str, BaseAdapter] | None = None,
                 max_response_bytes: int | None = None) -> SoapService:
    """Load the WSDL, read the secrets and certificates, bind the port; ConfigError if not.

    ``max_response_bytes`` bounds what a call reads (enrich steps; a target reads it all)."""
    wsdl = resolve(base_dir, config.wsdl)
    session = requests.Session()
    pool = DeadlineAdapter(pool_connections=1, pool_maxsize=config.max_workers)
    if config.tls is not None:
        target_context(config.tls, where)  # a ConfigError now, not per call
        pool = _TlsAdapter(config.tls, pool_connections=1, pool_maxsize=config.max_workers)
    session.mount("http://", pool)
    session.mount("https://", pool)
    for prefix, transport in (transports or {}).items():
        session.mount(prefix, transport)
    plugins: list[Plugin] = []
    if config.basic is not None:
        session.auth = (config.basic.username,
                        require_secret(config.basic, "password", f"{where}.basic"))
    if config.wsse is not None:
        plugins.append(WssePlugin(UsernameToken(
            config.wsse.username, require_secret(config.wsse, "password", f"{where}.wsse"),
            use_digest=config.wsse.digest)))
    plugins.append(MaskedLogPlugin())
    client = load_client(wsdl, session=session, plugins=plugins,
                         operation_timeout=(config.connect_timeout, config.timeout),
                         max_response_bytes=max_response_bytes)
    binding, address, operations = _select(client, config, wsdl)
    return SoapService(client, client.create_service(binding, address), session, operations,
                       wsdl, binding)


class _TlsAdapter(DeadlineAdapter):
    """Connections that verify against ``tls.ca_file`` and present ``tls.cert_file``."""

    def __init__(self, tls: TargetTlsConfig, **options: Any) -> None:
        super().__init__(**options)
        self._verify: bool | str = tls.ca_file or True
        self._cert = ((tls.cert_file, tls.key_file) if tls.cert_file and tls.key_file
                      else tls.cert_file)

    def send(self, request: PreparedRequest, **options: Any) -> Response:  # type: ignore[override]
        options["verify"] = self._verify
        if self._cert is not None:
            options["cert"] = self._cert
        return super().send(request, **options)


def resolve(base_dir: Path, relative: str) -> Path:
    path = Path(relative)
    return path if path.is_absolute() else base_dir / path


def _select(client: Client, config: SoapClientConfig,
            wsdl: Path) -> tuple[str, str, dict[str, Any]]:
    """Binding name, address and operations of the port; ConfigError naming what exists."""

    def problem(path: str, message: str) -> ConfigError:
        return ConfigError([Problem(str(wsdl), None, path, message)])

    services = client.wsdl.services
    if config.service is not None:
        service = services.get(config.service)
        if service is None:
            raise problem("service", f"no service {config.service!r}"
                          f"{did_you_mean(config.service, services)}; has {', '.join(services)}")
    elif len(services) == 1:
        service = next(iter(services.values()))
    else:
        raise problem("service", f"several services ({', '.join(services)}); set 'service'")
    ports = service.ports
    if config.port is not None:
        port = ports.get(config.port)
        if port is None:
            raise problem("port", f"no port {config.port!r} in {service.name}"
                          f"{did_you_mean(config.port, ports)}; has {', '.join(ports)}")
    elif ports:
        port = next(iter(ports.values()))
    else:
        raise problem("port", f"service {service.name} has no SOAP port")
    address = config.address or port.binding_options.get("address")
    if not address:
        raise problem("address", f"port {port.name} has no soap:address; set 'address'")
    return str(port.binding.name), str(address), dict(port.binding.all())

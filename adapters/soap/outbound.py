"""SOAP outbound adapter: call one WSDL operation per delivery through zeep.

The WSDL is read from a local file at start, and service, port and operation are resolved then,
so every configuration mistake stops the start with the file named. ``deliver`` never blocks
the consumer thread: the call runs on a bounded thread pool and resolves the returned Future.
zeep builds (and validates against the WSDL types) the request before anything is sent; a
payload that does not fit is a permanent failure, see ``classify`` for the rest.

The envelope id goes out as the idempotency key (an operation argument and/or an HTTP header,
see ``IdempotencyKey``) so a redelivery after a lost answer does not create a second record.
The envelope's W3C trace context goes out as ``traceparent`` / ``tracestate`` HTTP headers,
which SOAP stacks that trace read and the others ignore.
The serialized response becomes ``Delivered.response``, from which a mapping's ``capture``
stores ids the target assigned (e.g. the ERP order id) in the xref store.

``tls`` goes to requests as paths (``verify`` = the private CA, ``cert`` = the client
certificate and key), checked by loading them once at start, and is set on the connection
adapter rather than the session: requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``
override a session's ``verify``, which would silently drop the private CA. A failed handshake
is retried with a message that says what to set.

``transports`` is a test seam: requests transport adapters mounted by URL prefix on the
target's session, so the unit tier reaches a peer on a unix socket (``http+unix://``, through
requests-unixsocket2) without TCP (``tests/unit/targets``).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter, HTTPAdapter
from zeep import Client, Plugin
from zeep.proxy import ServiceProxy
from zeep.wsse.username import UsernameToken

from adapters.soap.classify import classify
from adapters.soap.config import SoapTargetConfig
from adapters.soap.values import plain
from adapters.soap.wsdl import LocalTransport, MaskedLogPlugin, WssePlugin, load_client
from middleware.adapter import AdapterContext, Delivered
from middleware.config.models import TargetTlsConfig
from middleware.envelope import Envelope
from middleware.errors import ConfigError, DeliveryError, Problem
from middleware.secrets import require_secret
from middleware.tls import describe_tls_failure, target_context
from middleware.tracing import outgoing
from middleware.yamlfile import did_you_mean

__all__ = ["SoapTarget"]


class SoapTarget:
    def __init__(self, config: SoapTargetConfig,
                 transports: Mapping[str, BaseAdapter] | None = None) -> None:
        self._config = config
        self._transports = dict(transports or {})
        self._client: Client | None = None
        self._service: ServiceProxy | None = None
        self._session: requests.Session | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._transport: LocalTransport | None = None

    def start(self, context: AdapterContext) -> None:
        config = self._config
        wsdl = _resolve(context.base_dir, config.wsdl)
        session = requests.Session()
        pool = HTTPAdapter(pool_connections=1, pool_maxsize=config.max_workers)
        if config.tls is not None:
            target_context(config.tls, "routes.target")  # a ConfigError now, not per call
            pool = _TlsAdapter(config.tls, pool_connections=1, pool_maxsize=config.max_workers)
        session.mount("http://", pool)
        session.mount("https://", pool)
        for prefix, transport in self._transports.items():
            session.mount(prefix, transport)
        plugins: list[Plugin] = []
        if config.basic is not None:
            session.auth = (config.basic.username,
                            require_secret(config.basic, "password", "routes.target.basic"))
        if config.wsse is not None:
            plugins.append(WssePlugin(UsernameToken(
                config.wsse.username, require_secret(config.wsse, "password", "routes.target.wsse"),
                use_digest=config.wsse.digest)))
        plugins.append(MaskedLogPlugin())
        client = load_client(wsdl, session=session, plugins=plugins,
                             operation_timeout=(config.connect_timeout, config.timeout))
        binding, address = _select(client, config, wsdl)
        self._client, self._session = client, session
        self._transport = client.transport
        self._service = client.create_service(binding, address)
        self._executor = ThreadPoolExecutor(max_workers=config.max_workers,
                                            thread_name_prefix=f"soap-{config.operation}")

    def deliver(self, envelope: Envelope, payload: Any) -> Future[Delivered]:
        assert self._executor is not None, "start() must run before deliver()"
        if not isinstance(payload, dict):
            failed: Future[Delivered] = Future()
            failed.set_exception(DeliveryError(
                f"the mapped payload must be an object of {self._config.operation} arguments, "
                f"not {type(payload).__name__}", retryable=False))
            return failed
        arguments = dict(payload)
        key = self._config.idempotency.argument
        if key is not None and arguments.get(key) in (None, ""):
            arguments[key] = envelope.id
        http_headers = outgoing(envelope.traceparent, envelope.tracestate)
        header = self._config.idempotency.header
        if header:
            http_headers[header] = envelope.id
        return self._executor.submit(self._call, http_headers, arguments)

    def _call(self, http_headers: dict[str, str], arguments: dict[str, Any]) -> Delivered:
        assert self._client is not None and self._service is not None
        assert self._transport is not None
        operation = self._config.operation
        try:
            with self._client.settings(extra_http_headers=http_headers):
                result = self._service[operation](**arguments)
        except Exception as exc:  # translated at the boundary: the pipeline sees DeliveryError
            problem = describe_tls_failure(exc)
            if problem is not None:  # retried: a target's certificate can be fixed in time
                raise DeliveryError(f"SOAP call {operation} failed: {problem}", retryable=True,
                                    details={"error": "tls"}) from exc
            raise classify(exc, operation, self._transport.last_status()) from exc
        return Delivered(response=plain(result), details={"operation": operation})

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._session is not None:
            self._session.close()


class _TlsAdapter(HTTPAdapter):
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


def _resolve(base_dir: Path, relative: str) -> Path:
    path = Path(relative)
    return path if path.is_absolute() else base_dir / path


def _select(client: Client, config: SoapTargetConfig, wsdl: Path) -> tuple[str, str]:
    """The binding name and address to call; ConfigError naming what exists otherwise."""

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
    operations = port.binding.all()
    if config.operation not in operations:
        raise problem("operation", f"no operation {config.operation!r} in {port.binding.name}"
                      f"{did_you_mean(config.operation, operations)}; "
                      f"has {', '.join(sorted(operations))}")
    argument = config.idempotency.argument
    if argument is not None:
        names = _argument_names(operations[config.operation])
        if names is not None and argument not in names:
            raise problem("idempotency.argument",
                          f"{config.operation} has no argument {argument!r}"
                          f"{did_you_mean(argument, names)}; has {', '.join(names) or 'none'}")
    address = config.address or port.binding_options.get("address")
    if not address:
        raise problem("address", f"port {port.name} has no soap:address; set 'address'")
    return str(port.binding.name), str(address)


def _argument_names(operation: Any) -> list[str] | None:
    """Top-level argument names of a document/literal operation; None when not that shape."""
    try:
        return [str(name) for name, _element in operation.input.body.type.elements]
    except AttributeError:
        return None

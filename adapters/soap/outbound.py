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

WSDL loading, auth, TLS, timeouts and the classification of failures are
``adapters.soap.client``'s, shared with SOAP enrich steps. ``transports`` is a test seam:
requests transport adapters mounted by URL prefix, so the unit tier reaches a peer on a unix
socket (``http+unix://``, through requests-unixsocket2) without TCP (``tests/unit/targets``).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from requests.adapters import BaseAdapter

from adapters.soap.client import SoapService, open_service
from adapters.soap.config import SoapTargetConfig
from middleware.adapter import AdapterContext, Delivered
from middleware.envelope import Envelope
from middleware.errors import ConfigError, DeliveryError, Problem
from middleware.tracing import outgoing
from middleware.yamlfile import did_you_mean

__all__ = ["SoapTarget"]


class SoapTarget:
    def __init__(self, config: SoapTargetConfig,
                 transports: Mapping[str, BaseAdapter] | None = None) -> None:
        self._config = config
        self._transports = dict(transports or {})
        self._service: SoapService | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self, context: AdapterContext) -> None:
        config = self._config
        service = open_service(config, context.base_dir, "routes.target", self._transports)
        try:
            service.check_operation(config.operation, "operation")
            _check_argument(service, config)
        except ConfigError:
            service.close()
            raise
        self._service = service
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
        assert self._service is not None
        operation = self._config.operation
        result = self._service.call(operation, arguments, http_headers)
        return Delivered(response=result, details={"operation": operation})

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._service is not None:
            self._service.close()


def _check_argument(service: SoapService, config: SoapTargetConfig) -> None:
    """The idempotency argument must be one the operation takes (when its shape is known)."""
    argument = config.idempotency.argument
    if argument is None:
        return
    names = service.argument_names(config.operation)
    if names is not None and argument not in names:
        raise ConfigError([Problem(
            str(service.wsdl), None, "idempotency.argument",
            f"{config.operation} has no argument {argument!r}{did_you_mean(argument, names)}; "
            f"has {', '.join(names) or 'none'}")])

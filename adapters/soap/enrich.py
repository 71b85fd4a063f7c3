"""SOAP systems for enrich steps: call an operation (NAV's ``Read``), merge the answer.

    systems:
      nav:
        type: soap
        wsdl: wsdl/nav-customer-page.wsdl
        address: http://nav.example.com:7047/DynamicsNAV/WS/CRONUS/Page/Customer
        basic: {username: svc-silobridge, password_env: NAV_PASSWORD}
    routes:
      - ...
        enrich:
          - system: nav
            call: {operation: Read, arguments: {No: "{payload.Customer.No}"}}
            select: Key
            into: Customer.Key
            after_mapping: true

WSDL, auth, TLS, timeouts and the classification of faults are the SOAP target's
(``adapters.soap.client``): a Server fault or a 5xx is retried, a Client fault dead-letters.
Operation and argument names are checked against the WSDL at start. Calls block (zeep), so they
run on the system's own pool of ``max_workers`` threads and a slow service holds only those.
An answer is read up to ``max_response_bytes``. An argument that is one placeholder alone
(``"{payload.qty}"``) keeps its value's type; any other string is a template filled as text.
While tracing is on, the call carries ``traceparent`` / ``tracestate`` HTTP headers naming the
message's ``enrich`` span, as the SOAP target's call carries its deliver span.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson
from requests.adapters import BaseAdapter

from adapters._derive import resolve_path
from adapters.rest.client import render
from adapters.soap.client import SoapService, open_service
from adapters.soap.config import SoapSystemConfig
from middleware.adapter import AdapterContext
from middleware.config.enrich import EnrichStep
from middleware.enrich import Prepared, StepCall
from middleware.envelope import Envelope
from middleware.errors import ConfigError, DeliveryError, Problem
from middleware.yamlfile import did_you_mean

__all__ = ["SoapSystem", "SoapSystemConfig"]

_WHOLE = re.compile(r"^\{(envelope|payload)\.([^{}]+)\}$")


class SoapSystem:
    def __init__(self, config: SoapSystemConfig,
                 transports: Mapping[str, BaseAdapter] | None = None) -> None:
        self.config = config
        self._transports = dict(transports or {})
        self.service: SoapService | None = None
        self.executor: ThreadPoolExecutor | None = None

    def start(self, context: AdapterContext) -> None:
        self.service = open_service(self.config, context.base_dir, "systems", self._transports,
                                    self.config.max_response_bytes)
        self.executor = ThreadPoolExecutor(max_workers=self.config.max_workers,
                                           thread_name_prefix="soap-enrich")

    def bind(self, step: EnrichStep, where: str) -> StepCall:
        service = self.service
        assert service is not None, "start() must run before bind()"
        if step.call is None:  # the loader refuses this too; a guard for direct use
            raise ConfigError([Problem("", None, where, "a soap system takes 'call'")])
        operation = step.call.operation
        service.check_operation(operation, f"{where}.call.operation")
        names = service.argument_names(operation)
        for argument in step.call.arguments:
            if names is not None and argument not in names:
                raise ConfigError([Problem(
                    str(service.wsdl), None, f"{where}.call.arguments.{argument}",
                    f"{operation} has no argument {argument!r}{did_you_mean(argument, names)}; "
                    f"has {', '.join(names) or 'none'}")])
        return _Call(self, operation, step.call.arguments)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        if self.service is not None:
            self.service.close()


class _Call:
    def __init__(self, system: SoapSystem, operation: str, arguments: dict[str, Any]) -> None:
        self._system = system
        self._operation = operation
        self._arguments = arguments
        self._uses_envelope = "{envelope." in orjson.dumps(arguments).decode()

    def prepare(self, envelope: Envelope, payload: Any) -> Prepared:
        values = {
            "envelope": (orjson.loads(envelope.to_json(data=None)) if self._uses_envelope
                         else None),
            "payload": payload,
        }
        arguments = _filled(self._arguments, values)
        key = self._operation + orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS,
                                             default=str).decode()
        return Prepared(key, arguments)

    def fetch(self, prepared: Prepared, trace: Mapping[str, str]) -> Future[Any]:
        system = self._system
        assert system.executor is not None and system.service is not None
        return system.executor.submit(system.service.call, self._operation, prepared.request,
                                      dict(trace))


def _filled(value: Any, values: dict[str, Any]) -> Any:
    """Arguments with their templates filled; a lone placeholder keeps the value's type."""
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    if not isinstance(value, str):
        return value
    whole = _WHOLE.match(value)
    if whole is None:
        return render(value, values, in_url=False)
    found = resolve_path(values.get(whole.group(1)), whole.group(2))
    if found is None:
        raise DeliveryError(f"argument placeholder {value} has no value; fix the step's "
                            f"arguments or the mapping", retryable=False,
                            details={"template": value})
    return found

"""Inbound SOAP endpoint generated from a WSDL: the sender calls us, we publish envelopes.

At start the WSDL's document/literal operations are indexed by their input element, and each
configured operation is checked: it exists, and its ``reply`` renders as the output element the
WSDL declares. A request is then parsed (hardened), matched to its operation by the Body
element, its SOAPAction checked against the WSDL (below), read strictly against the WSDL types by
zeep (unexpected, missing or mistyped elements are a Client fault naming the element path, never
the value sent), turned into one envelope per request (or per item
of ``each``) with the shared event derivation, published with confirms, and answered.

SOAPAction: a request that declares an action (the SOAP 1.1 ``SOAPAction`` header, the SOAP 1.2
``action`` parameter) must declare the soapAction the WSDL gives its Body's operation in the
binding of its SOAP version, else a Client fault names both: a gateway that routes or authorizes
by action must never see one operation while we execute another. An empty or absent action
declares no intent (SOAP 1.2 makes it optional; SOAP 1.1 senders often omit it) and is accepted,
the Body element choosing the operation; so is any action when the binding declares none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree
from zeep import exceptions as zeep_errors
from zeep.wsdl import Document
from zeep.wsdl.bindings.soap import Soap11Binding, Soap12Binding
from zeep.xsd import Element
from zeep.xsd.context import XmlParserContext

from adapters._derive import DerivationError, Deriver, compile_derive, resolve_path
from adapters.soap.config import SoapEndpointConfig, SoapOperationConfig
from adapters.soap.endpoint import Derived, SoapEndpoint
from adapters.soap.protocol import (
    SoapFault,
    SoapMessage,
    SoapVersion,
    excerpt,
    request_action,
)
from adapters.soap.values import plain
from adapters.soap.wsdl import load_document
from middleware.adapter import AdapterContext
from middleware.envelope import Envelope
from middleware.errors import ConfigError, Problem
from middleware.yamlfile import did_you_mean

__all__ = ["SoapInbound"]


@dataclass(frozen=True)
class _Operation:
    """One accepted operation, compiled."""

    name: str
    request: Element
    response: Element | None
    document: Document
    config: SoapOperationConfig
    deriver: Deriver
    actions: dict[SoapVersion, frozenset[str]]

    def check_action(self, version: SoapVersion, sent: str | None) -> None:
        """A declared action must be the WSDL's (see the module docstring)."""
        declared = self.actions.get(version, frozenset())
        if not sent or not declared or sent in declared:
            return
        raise SoapFault("Client", f"SOAPAction {excerpt(sent)!r} does not match "
                        f"{' or '.join(repr(a) for a in sorted(declared))}, the soapAction the "
                        f"WSDL declares for {self.name}", reason="soap_action")

    def read(self, node: etree._Element) -> Any:
        """The request as plain values; a Client fault naming the first problem."""
        context = XmlParserContext(settings=self.document.settings)
        try:
            value = self.request.parse(node, self.document.types, context=context)
            # zeep reports missing and unconvertible values only when rendering: check now.
            self.request.render(etree.Element("check"), value)
        except zeep_errors.XMLParseError as exc:
            raise SoapFault("Client", f"invalid {self.name} request: "
                            f"{excerpt(str(exc.message), 160)}", reason="invalid") from None
        except zeep_errors.ValidationError as exc:
            raise SoapFault("Client", f"invalid {self.name} request: {_explain(node, exc)}",
                            reason="invalid") from None
        except Exception as exc:  # e.g. decimal.InvalidOperation: zeep lets conversions escape
            # Only the sender's document went in: resending it cannot help, so a Client fault,
            # and the exception's text (which quotes the value) stays out of it.
            raise SoapFault("Client", f"invalid {self.name} request: a value does not fit its "
                            f"XML Schema type ({type(exc).__name__})", reason="invalid") from None
        return plain(value)

    def reply(self, count: int) -> etree._Element | None:
        if self.response is None:
            return None
        values = {key: count if item == "{count}" else item
                  for key, item in self.config.reply.items()}
        holder = etree.Element("holder")
        self.response.render(holder, self.response(**values))
        return holder[0]


def _explain(node: etree._Element, exc: zeep_errors.ValidationError) -> str:
    """zeep says 'Missing element X' also when X was present but not of its type; tell apart."""
    path = [str(part) for part in exc.path or []]
    where = excerpt(".".join(path), 160)
    if len(path) > 1:
        steps = "/".join(f"*[local-name()='{part}']" for part in path[1:])
        if any((found.text or "").strip() for found in node.xpath(steps)):
            return f"{where}: the value is not valid for its XML Schema type"
    message = excerpt(str(exc.message), 160)
    return f"{message} (at {where})" if where else message


class SoapInbound(SoapEndpoint):
    def __init__(self, config: SoapEndpointConfig) -> None:
        super().__init__(config)
        self._config = config
        self._operations: dict[str, _Operation] = {}

    def start(self, context: AdapterContext) -> None:
        wsdl = Path(self._config.wsdl)
        wsdl = wsdl if wsdl.is_absolute() else context.base_dir / wsdl
        document = load_document(wsdl)
        self._operations = _compile(document, self._config, wsdl)
        self.mount(context, wsdl)

    def derive(self, message: SoapMessage, headers: Mapping[str, str]) -> Derived:
        if message.body is None:
            raise SoapFault("Client", "the Body is empty; expected one of "
                            f"{', '.join(op.name for op in self._operations.values())}",
                            reason="invalid")
        operation = self._operations.get(message.body.tag)
        if operation is None:
            raise SoapFault("Client", "no operation of this endpoint takes "
                            f"{excerpt(str(message.body.tag), 120)}; accepted: "
                            f"{', '.join(sorted(self._operations))}", reason="unknown_operation")
        operation.check_action(message.version, request_action(message.version, headers))
        items = _items(operation.read(message.body), operation.config.each)
        envelopes = []
        for item in items:
            try:
                derived = operation.deriver.derive(item, headers)
            except DerivationError as exc:
                raise SoapFault("Client", f"{operation.name}: {exc}", reason="derive") from None
            envelopes.append(Envelope.new(
                source=self._config.envelope_source,
                type=f"{self._config.system}.{derived.entity}.{derived.action}",
                data=item, subject=derived.subject, id=derived.id, time=derived.time))
        return Derived(envelopes, operation.config.derive.id is not None,
                       operation.reply(len(envelopes)))


def _items(data: Any, each: str | None) -> list[Any]:
    if each is None:
        return [data]
    found = resolve_path(data, each)
    if found is None:
        return []
    return found if isinstance(found, list) else [found]


def _compile(document: Document, config: SoapEndpointConfig, wsdl: Path) -> dict[str, _Operation]:
    """Index the configured operations by input element; ConfigError lists every problem."""
    available: dict[str, Any] = {}
    actions: dict[str, dict[SoapVersion, set[str]]] = {}
    for binding in document.bindings.values():
        version = (SoapVersion.V12 if isinstance(binding, Soap12Binding)
                   else SoapVersion.V11 if isinstance(binding, Soap11Binding) else None)
        for name, operation in binding.all().items():
            available.setdefault(name, operation)
            if version is not None and getattr(operation, "soapaction", None):
                actions.setdefault(name, {}).setdefault(version, set()).add(operation.soapaction)
    compiled: dict[str, _Operation] = {}
    problems: list[Problem] = []
    for name, op_config in config.operations.items():
        where = f"operations.{name}"
        found = available.get(name)
        if found is None:
            problems.append(Problem(str(wsdl), None, where,
                                    f"the WSDL has no operation {name!r}"
                                    f"{did_you_mean(name, available)}"))
            continue
        request, response = found.input.body, found.output.body if found.output else None
        if not isinstance(request, Element) or found.style != "document":
            problems.append(Problem(str(wsdl), None, where,
                                    "only document/literal operations can be served"))
            continue
        declared = {version: frozenset(names)
                    for version, names in actions.get(name, {}).items()}
        operation = _Operation(name, request, response if isinstance(response, Element)
                               else None, document, op_config, compile_derive(op_config.derive),
                               declared)
        try:
            operation.reply(0)
        except (TypeError, zeep_errors.Error) as exc:
            problems.append(Problem(str(wsdl), None, f"{where}.reply",
                                    f"does not render as the WSDL's response: {exc}"))
            continue
        compiled[request.qname.text] = operation
    if problems:
        raise ConfigError(problems)
    return compiled

"""Salesforce Outbound Messaging: the receiving end of workflow and flow notifications.

Salesforce POSTs a SOAP 1.1 ``notifications`` message with up to 100 ``Notification`` elements
and resends the *whole* message, for up to 24 hours and not necessarily in order, until it gets
``<Ack>true</Ack>``. So:

- the OrganizationId must match the configured org, compared on the full 18-character id:
  15-character ids are case-sensitive, and the 3 characters Salesforce appends encode the case
  of the 15, so two orgs whose ids differ only in case differ in the suffix too. A configured
  15-character id is extended by that rule; a mismatch is a Fault, and nothing is stored;
- each notification becomes one envelope whose id is the notification Id, so a resend dedupes
  (ids already confirmed are skipped, and recorded only after their confirm);
- the Ack is sent only after every envelope was confirmed; any failure answers a Fault, and the
  resend then stores only what is still missing;
- the payload is the sObject's fields by name (text as sent, ``xsi:nil`` as null). sObjects are
  read by element name, not against the WSDL types, because every org's WSDL differs (custom
  ``__c`` fields) and the one served at ``?wsdl`` is just the one Salesforce generated;
- an empty ``notifications`` element (seen in the wild) stores nothing and is acked;
- the SessionId Salesforce includes is never stored or logged;
- what the sender got wrong (an unparseable or out-of-range date such as ``1e400``, a missing
  Id) is a Client fault, which Salesforce does not resend: a Server fault would make it resend
  the same message for 24 hours. Faults name the field, never its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lxml import etree

from adapters._derive import parse_time
from adapters.soap.config import SalesforceConfig
from adapters.soap.endpoint import Derived, SoapEndpoint
from adapters.soap.protocol import SoapFault, SoapMessage, excerpt
from adapters.soap.wsdl import load_document
from middleware.adapter import AdapterContext
from middleware.envelope import Envelope
from middleware.errors import ConfigError, FieldTooLong, Problem

__all__ = ["OUTBOUND_NS", "SalesforceInbound", "full_org_id"]

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
MAX_NOTIFICATIONS = 100
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_WORD_BAD = re.compile(r"[^a-z0-9_-]+")
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def full_org_id(ident: str) -> str | None:
    """The 18-character form of a Salesforce id, None when ``ident`` is no id.

    Salesforce's rule: for each 5-character chunk of the 15, bit i is set when character i is
    an uppercase letter; the 5-bit number picks a character of A-Z0-5. 18-character ids are kept
    as they are.
    """
    ident = ident.strip()
    if not _ID.fullmatch(ident):
        return None
    if len(ident) == 18:
        return ident
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(ident[start:start + 5]) if "A" <= ch <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return ident + suffix


def _fields(node: etree._Element) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for child in node:
        name = etree.QName(child).localname
        if child.get(f"{{{_XSI}}}nil") in ("true", "1"):
            fields[name] = None
        elif len(child):
            fields[name] = _fields(child)
        else:
            fields[name] = child.text or ""
    return fields


class SalesforceInbound(SoapEndpoint):
    def __init__(self, config: SalesforceConfig) -> None:
        super().__init__(config)
        self._config = config
        org = full_org_id(config.organization_id)
        assert org is not None, "the config pattern admits 15 or 18 letters and digits only"
        self._org = org

    def start(self, context: AdapterContext) -> None:
        wsdl = None
        if self._config.wsdl is not None:
            wsdl = Path(self._config.wsdl)
            wsdl = wsdl if wsdl.is_absolute() else context.base_dir / wsdl
            operations = {name for binding in load_document(wsdl).bindings.values()
                          for name in binding.all()}
            if "notifications" not in operations:
                raise ConfigError([Problem(str(wsdl), None, "wsdl",
                                           "not a Salesforce Outbound Message WSDL (it has no "
                                           "'notifications' operation)")])
        self.mount(context, wsdl)

    def derive(self, message: SoapMessage, headers: Mapping[str, str]) -> Derived:
        body = message.body
        if body is None or body.tag != f"{{{OUTBOUND_NS}}}notifications":
            found = "nothing" if body is None else excerpt(str(body.tag), 120)
            raise SoapFault("Client", f"expected {{{OUTBOUND_NS}}}notifications in the Body, "
                            f"got {found}", reason="invalid")
        notifications = body.findall(f"{{{OUTBOUND_NS}}}Notification")
        if len(notifications) > MAX_NOTIFICATIONS:
            raise SoapFault("Client", f"{len(notifications)} notifications; Salesforce sends "
                            f"at most {MAX_NOTIFICATIONS}", reason="invalid")
        org = body.findtext(f"{{{OUTBOUND_NS}}}OrganizationId")
        if (org is not None or notifications) and full_org_id(org or "") != self._org:
            raise SoapFault("Client", "OrganizationId does not match the organization this "
                            "endpoint accepts", reason="org_mismatch")
        envelopes = [self._envelope(n, i) for i, n in enumerate(notifications)]
        response = etree.Element(f"{{{OUTBOUND_NS}}}notificationsResponse",
                                 nsmap={None: OUTBOUND_NS})
        etree.SubElement(response, f"{{{OUTBOUND_NS}}}Ack").text = "true"
        return Derived(envelopes, True, response)

    def _envelope(self, notification: etree._Element, index: int) -> Envelope:
        where = f"Notification[{index}]"
        ident = (notification.findtext(f"{{{OUTBOUND_NS}}}Id") or "").strip()
        sobject = notification.find(f"{{{OUTBOUND_NS}}}sObject")
        if not ident or sobject is None:
            raise SoapFault("Client", f"{where} needs an Id and an sObject", reason="invalid")
        fields = _fields(sobject)
        entity = self._config.entity or self._entity(sobject)
        if not entity:
            raise SoapFault("Client", f"{where}: the sObject has no xsi:type; set 'entity'",
                            reason="invalid")
        when = fields.get(self._config.time_field)
        try:
            time = parse_time(when) if isinstance(when, str) and when else None
        except (ValueError, OverflowError, OSError):  # '1e400' overflows, '1e20' is no year
            raise SoapFault("Client", f"{where}: {self._config.time_field} is not a date-time "
                            "in range (ISO 8601 or epoch seconds)", reason="invalid") from None
        subject = fields.get(self._config.subject_field)
        config = self._config
        try:
            return Envelope.new(
                source=config.envelope_source, type=f"{config.system}.{entity}.{config.action}",
                data=fields, id=ident, time=time,
                subject=subject if isinstance(subject, str) and subject else None,
            )
        except FieldTooLong as exc:  # the id is the Notification Id, the type the xsi:type
            source = "Id" if exc.field == "id" else "sObject xsi:type"
            raise SoapFault("Client", f"{where}: the {source} is too long: {exc}",
                            reason="field_too_long") from None

    @staticmethod
    def _entity(sobject: etree._Element) -> str:
        """'sf:Account' -> 'account'; custom objects keep their suffix ('invoice__c')."""
        declared = sobject.get(f"{{{_XSI}}}type") or ""
        return _WORD_BAD.sub("_", declared.rsplit(":", 1)[-1].lower()).strip("_")

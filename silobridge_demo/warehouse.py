"""The demo's warehouse: ships the demo ERP's sales orders and reports them to silobridge.

It closes the loop of ``silobridge demo``: shipments go back to the CRM through the daemon's
SOAP endpoint (``ReportShipments`` of config/examples/soap-inbound/shipments.wsdl) and the
shipment route. The request is a plain SOAP 1.1 envelope built with lxml, as any SOAP client
would send it. A report that fails (the daemon is busy or restarting) is sent again on the next
call with the same shipment ids, which the endpoint deduplicates, so ``reported`` counts each
shipment once.
"""

from __future__ import annotations

from typing import Any

import httpx
from lxml import etree

from silobridge_demo.erp import ErpState

__all__ = ["Warehouse"]

NAMESPACE = "urn:silobridge:examples:shipments"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_BATCH = 100
"""``Shipment maxOccurs`` in the WSDL."""


class Warehouse:
    """Ships every sales order of ``state`` once and reports it to ``url`` (the SOAP endpoint)."""

    def __init__(self, state: ErpState, url: str, name: str = "BER-1") -> None:
        self.state = state
        self._url = url
        self._name = name
        self._shipped: set[str] = set()
        self._pending: list[dict[str, Any]] = []
        self.reported = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def ship_and_report(self) -> int:
        """Ship the orders not shipped yet, report one batch; returns how many were accepted."""
        with self.state.lock:
            new = [order for order in self.state.orders if order not in self._shipped]
            for order in new:
                self._shipped.add(order)
                self._pending.append(self.state.ship(order))
        batch = self._pending[:MAX_BATCH]
        if not batch:
            return 0
        try:
            answer = httpx.post(self._url, content=_envelope(self._name, batch), timeout=10,
                                headers={"Content-Type": "text/xml; charset=utf-8",
                                         "SOAPAction": f'"{NAMESPACE}:ReportShipments"'})
        except httpx.HTTPError:
            return 0
        if answer.status_code != 200:
            return 0
        del self._pending[:len(batch)]
        self.reported += len(batch)
        return len(batch)


def _envelope(warehouse: str, shipments: list[dict[str, Any]]) -> bytes:
    def element(parent: etree._Element, name: str, text: str) -> None:
        etree.SubElement(parent, f"{{{NAMESPACE}}}{name}").text = text

    envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "s": NAMESPACE})
    report = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP}}}Body"),
                              f"{{{NAMESPACE}}}ReportShipments")
    element(report, "Warehouse", warehouse)
    for shipment in shipments:
        node = etree.SubElement(report, f"{{{NAMESPACE}}}Shipment")
        element(node, "ShipmentId", shipment["ShipmentId"])
        element(node, "OrderNo", shipment["OrderNo"])
        element(node, "Carrier", shipment["Carrier"])
        element(node, "Packages", "1")
        element(node, "ShippedAt", shipment["ShippedAt"].isoformat())
    body: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return body

"""The SOAP example config is valid and every SOAP adapter in it starts (WSDLs load, operations
resolve, replies render) without a broker or a network."""

from __future__ import annotations

from pathlib import Path

from adapters.soap.config import SoapEndpointConfig, SoapTargetConfig
from adapters.soap.inbound import SoapInbound
from adapters.soap.outbound import SoapTarget
from middleware.adapter import AdapterContext
from middleware.config.loader import load_config
from middleware.config.models import BrokerConfig, StoreConfig
from middleware.stores import open_stores
from tests.unit.soap.helpers import EXAMPLES, MemoryPublisher, endpoint_client

CONFIG = EXAMPLES / "soap-erp" / "silobridge.yaml"


def test_soap_example_config_is_valid_and_its_adapters_start(tmp_path: Path) -> None:
    loaded = load_config(CONFIG)
    types = sorted(section.type for section in loaded.config.inbound)
    assert types == ["rest", "salesforce-om", "soap"]
    stores = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    context = AdapterContext(MemoryPublisher(), BrokerConfig(), stores,  # type: ignore[arg-type]
                             loaded.base_dir)
    targets = [route.target for route in loaded.config.routes
               if isinstance(route.target, SoapTargetConfig)]
    assert [target.operation for target in targets] == ["CreateSalesOrder", "ReserveInventory"]
    for config in targets:
        target = SoapTarget(config)
        target.start(context)
        target.close()
    [endpoint] = [s for s in loaded.config.inbound if isinstance(s, SoapEndpointConfig)]
    client, _ = endpoint_client(SoapInbound(endpoint), tmp_path, MemoryPublisher(),
                                loaded.base_dir)
    assert client.get(f"{endpoint.path}?wsdl").status_code == 200

"""SOAP adapters: WSDL endpoints (``soap`` inbound), Salesforce Outbound Messaging
(``salesforce-om`` inbound), zeep targets (``soap`` outbound) and systems enrich steps call
(``soap`` systems). The demo SOAP ERP they are
shown against lives in the ``silobridge_demo`` package."""

from adapters.soap.config import (
    SalesforceConfig,
    SoapEndpointConfig,
    SoapTargetConfig,
    idempotency_advice,
)
from adapters.soap.enrich import SoapSystem, SoapSystemConfig
from adapters.soap.inbound import SoapInbound
from adapters.soap.outbound import SoapTarget
from adapters.soap.salesforce import SalesforceInbound
from middleware.adapter import AdapterConfig
from middleware.plugins import AdapterSpec, register

__all__ = [
    "SalesforceConfig",
    "SalesforceInbound",
    "SoapEndpointConfig",
    "SoapInbound",
    "SoapSystem",
    "SoapSystemConfig",
    "SoapTarget",
    "SoapTargetConfig",
]


def _endpoint(config: AdapterConfig) -> SoapInbound:
    assert isinstance(config, SoapEndpointConfig)
    return SoapInbound(config)


def _salesforce(config: AdapterConfig) -> SalesforceInbound:
    assert isinstance(config, SalesforceConfig)
    return SalesforceInbound(config)


def _target_advice(config: AdapterConfig) -> list[str]:
    assert isinstance(config, SoapTargetConfig)
    return idempotency_advice(config)


def _target(config: AdapterConfig) -> SoapTarget:
    assert isinstance(config, SoapTargetConfig)
    return SoapTarget(config)


def _system(config: AdapterConfig) -> SoapSystem:
    assert isinstance(config, SoapSystemConfig)
    return SoapSystem(config)


register(AdapterSpec("soap", inbound_config=SoapEndpointConfig, inbound=_endpoint,
                     outbound_config=SoapTargetConfig, outbound=_target,
                     target_advice=_target_advice, system_config=SoapSystemConfig,
                     system=_system))
register(AdapterSpec("salesforce-om", inbound_config=SalesforceConfig, inbound=_salesforce))

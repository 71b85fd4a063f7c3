"""SOAP adapters: WSDL endpoints (``soap`` inbound), Salesforce Outbound Messaging
(``salesforce-om`` inbound), zeep targets (``soap`` outbound) and systems enrich steps call
(``soap`` systems). The demo SOAP ERP they are
shown against lives in the ``silobridge_demo`` package.

Only the configs are imported here: every daemon loads every registered adapter package to
know its configs, and zeep, lxml and requests add 12.9 MiB to each process (measured after
``import middleware.daemon``). The builders import them when a config uses SOAP.
"""

from adapters.soap.config import (
    SalesforceConfig,
    SoapEndpointConfig,
    SoapSystemConfig,
    SoapTargetConfig,
    idempotency_advice,
)
from middleware.adapter import AdapterConfig, InboundAdapter, OutboundAdapter
from middleware.enrich.contract import System
from middleware.plugins import AdapterSpec, register

__all__ = ["SalesforceConfig", "SoapEndpointConfig", "SoapSystemConfig", "SoapTargetConfig"]


def _endpoint(config: AdapterConfig) -> InboundAdapter:
    from adapters.soap.inbound import SoapInbound

    assert isinstance(config, SoapEndpointConfig)
    return SoapInbound(config)


def _salesforce(config: AdapterConfig) -> InboundAdapter:
    from adapters.soap.salesforce import SalesforceInbound

    assert isinstance(config, SalesforceConfig)
    return SalesforceInbound(config)


def _target_advice(config: AdapterConfig) -> list[str]:
    assert isinstance(config, SoapTargetConfig)
    return idempotency_advice(config)


def _target(config: AdapterConfig) -> OutboundAdapter:
    from adapters.soap.outbound import SoapTarget

    assert isinstance(config, SoapTargetConfig)
    return SoapTarget(config)


def _system(config: AdapterConfig) -> System:
    from adapters.soap.enrich import SoapSystem

    assert isinstance(config, SoapSystemConfig)
    return SoapSystem(config)


register(AdapterSpec("soap", inbound_config=SoapEndpointConfig, inbound=_endpoint,
                     outbound_config=SoapTargetConfig, outbound=_target,
                     target_advice=_target_advice, system_config=SoapSystemConfig,
                     system=_system))
register(AdapterSpec("salesforce-om", inbound_config=SalesforceConfig, inbound=_salesforce))

"""Config models; the loader that validates a config file is ``middleware.config.loader``.

The package does not import the loader: the loader finds adapters through the registry, and a
model import that dragged the adapter contracts in closed an import circle.
"""

from middleware.config.models import (
    BrokerConfig,
    Config,
    IngressConfig,
    OpsConfig,
    RetryPolicy,
    RouteConfig,
    StoreConfig,
    TlsConfig,
)

__all__ = [
    "BrokerConfig",
    "Config",
    "IngressConfig",
    "OpsConfig",
    "RetryPolicy",
    "RouteConfig",
    "StoreConfig",
    "TlsConfig",
]

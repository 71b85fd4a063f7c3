"""Config models and the loader that validates a config file with file/line/path errors."""

from middleware.config.loader import LoadedConfig, load_config
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
    "LoadedConfig",
    "OpsConfig",
    "RetryPolicy",
    "RouteConfig",
    "StoreConfig",
    "TlsConfig",
    "load_config",
]

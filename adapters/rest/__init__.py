"""REST adapters: webhook endpoints (``rest`` inbound), HTTP targets (``rest`` outbound) and
scheduled pollers (``poll`` inbound, with the ``silobridge poll`` command).

    inbound_config.py   endpoint and auth-scheme models      inbound.py    parse and derive
    signatures.py       HMAC schemes, API key, basic          body.py       JSON, exact numbers
    replay.py           dedupe keys, replay-risk warnings     README.md     auth schemes
    openapi.py          /openapi.json of the ingress          secrets.py    secrets from the env
    outbound_config.py  target and client-auth models         outbound.py   the target
    session.py          the HTTP client targets and systems share
    enrich.py           systems enrich steps GET from
    client.py           OAuth2 / bearer / basic, templates    poll*.py      the poller
    cli.py              ``silobridge poll NAME [--once]``

Shared with the SOAP adapter: ``adapters._derive`` (event attributes), ``adapters._http``
(HTTP status classification) and the ingress layer (``middleware.ingress``: body limits, media
types, refusals, dedupe and confirmed publishing). The file format is shown in
mappings/examples/rest-webhooks.yaml.
"""

from adapters.rest.cli import register_commands
from adapters.rest.enrich import RestSystem, RestSystemConfig
from adapters.rest.inbound import RestInbound
from adapters.rest.inbound_config import RestEndpointConfig
from adapters.rest.outbound import RestTarget
from adapters.rest.outbound_config import RestTargetConfig
from adapters.rest.poll import Poller
from adapters.rest.poll_config import PollConfig
from adapters.rest.replay import replay_risks
from middleware.adapter import AdapterConfig
from middleware.plugins import AdapterSpec, register

__all__ = [
    "PollConfig",
    "Poller",
    "RestEndpointConfig",
    "RestInbound",
    "RestSystem",
    "RestSystemConfig",
    "RestTarget",
    "RestTargetConfig",
]


def _endpoint(config: AdapterConfig) -> RestInbound:
    assert isinstance(config, RestEndpointConfig)
    return RestInbound(config)


def _advise(config: AdapterConfig) -> list[str]:
    assert isinstance(config, RestEndpointConfig)
    return replay_risks(config)


def _target(config: AdapterConfig) -> RestTarget:
    assert isinstance(config, RestTargetConfig)
    return RestTarget(config)


def _system(config: AdapterConfig) -> RestSystem:
    assert isinstance(config, RestSystemConfig)
    return RestSystem(config)


def _poller(config: AdapterConfig) -> Poller:
    assert isinstance(config, PollConfig)
    return Poller(config)


register(AdapterSpec("rest", inbound_config=RestEndpointConfig, inbound=_endpoint,
                     outbound_config=RestTargetConfig, outbound=_target, advise=_advise,
                     system_config=RestSystemConfig, system=_system))
register(AdapterSpec("poll", inbound_config=PollConfig, inbound=_poller,
                     commands=register_commands))

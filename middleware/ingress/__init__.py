"""The ingress: one HTTP server and one request path that every inbound protocol shares.

    server.py      Ingress: the HTTP(S) server endpoints mount on, with limits per endpoint
    endpoint.py    IngressEndpoint: the request path; a protocol writes ``parse`` (and may
                   override ``admit``, ``accepted`` and ``refusal`` to answer in its own format)
    reading.py     the body: size limit before and while reading, media type
    publishing.py  IngressPublisher: claim delivery ids, publish confirmed, confirm or release
    loop.py        LoopPublisher: publishing from the event loop with batched hand-overs
    config.py      EndpointConfig: the fields every inbound endpoint has

Every refusal is a ``middleware.errors.Refused``. The package exports the server and the shared
config only: ``middleware.adapter`` (the adapter contract) imports the server, and the endpoint
base class is built on that contract, so protocols import it from ``middleware.ingress.endpoint``.
"""

from middleware.ingress.config import EndpointConfig
from middleware.ingress.server import Endpoint, Ingress

__all__ = ["Endpoint", "EndpointConfig", "Ingress"]

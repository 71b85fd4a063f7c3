"""The ingress: one HTTP server and one request path that every inbound protocol shares."""

from middleware.ingress.server import Endpoint, Ingress

__all__ = ["Endpoint", "Ingress"]

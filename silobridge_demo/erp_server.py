"""Host the demo ERP under a real WSGI server on a thread (stdlib wsgiref, one thread per call).

``/soap`` is the spyne application (its WSDL at ``/soap?wsdl``), ``/state`` the JSON snapshot of
what the ERP received. Tests start it in-process on port 0; ``silobridge demo erp`` runs it in the
foreground. ``report_changes`` connects its account changes to silobridge's ingress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from spyne.model.fault import Fault

from silobridge_demo.erp import ErpState, build_wsgi_app
from silobridge_demo.webhooks import Outbox, demo_secret

__all__ = ["ACCOUNT_CHANGES", "DemoErpServer", "report_changes"]

ACCOUNT_CHANGES = "/webhooks/erp/accounts"
"""Where the ERP posts its account changes (the demo config's ``demo-erp-accounts`` endpoint)."""

StartResponse = Callable[..., Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """wsgiref prints every request to stderr; the demo logs nothing per call."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class _DropFaults(logging.Filter):
    """spyne logs every Fault it answers with a traceback; for this ERP they are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Fault))


for _name in ("spyne.application", "spyne.application.client"):
    logging.getLogger(_name).addFilter(_DropFaults())


class DemoErpServer:
    """The demo ERP listening on ``host:port`` (0 picks a free port); ``url`` is its SOAP URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8090,
                 state: ErpState | None = None) -> None:
        self.state = state or ErpState()
        soap = build_wsgi_app(self.state)

        def dispatch(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/state":
                body = orjson.dumps(self.state.snapshot(), option=orjson.OPT_INDENT_2)
                start_response("200 OK", [("Content-Type", "application/json")])
                return [body]
            if path == "/soap":
                result: Iterable[bytes] = soap(environ, start_response)
                return result
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"the demo ERP serves /soap (WSDL at /soap?wsdl) and /state\n"]

        self._server = make_server(host, port, dispatch, server_class=_ThreadingServer,
                                   handler_class=_QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/soap"

    def start(self) -> DemoErpServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-erp",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


def report_changes(state: ErpState, ingress_url: str, secret: str | None = None) -> Outbox:
    """Post every account change of ``state`` to the ingress (signed, in order), as an ERP's
    change notifications do; the caller starts and closes the returned outbox."""
    outbox = Outbox(ingress_url, ACCOUNT_CHANGES, "X-ERP-Event", secret or demo_secret(),
                    "demo-erp")
    state.on_change = lambda action, account: outbox.put(account, action, "change")
    return outbox

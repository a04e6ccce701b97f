"""A local stand-in of Grafana's HTTP API for the tests (Grafana cannot run on this machine: no
package or image exists anywhere reachable). It implements the two endpoints the verification's
Grafana check calls: ``GET /api/health`` and ``GET /api/dashboards/uid/<uid>`` (basic auth)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GrafanaStandIn:
    """A local HTTP server implementing Grafana's ``GET /api/health`` and
    ``GET /api/dashboards/uid/<uid>`` (basic auth) with the generated dashboard."""

    def __init__(
        self, dashboards: dict[str, dict[str, Any]], user: str, password: str, *, port: int = 0
    ) -> None:
        self.dashboards = dashboards
        self.database_state = "ok"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/api/health":
                    self._send(
                        200,
                        {
                            "commit": "stand-in",
                            "database": stand_in.database_state,
                            "version": "12.1.1",
                        },
                    )
                    return
                if self.path.startswith("/api/dashboards/uid/"):
                    if self.headers.get("Authorization") != f"Basic {token}":
                        self._send(401, {"message": "invalid username or password"})
                        return
                    uid = urllib.parse.unquote(self.path.rsplit("/", 1)[1])
                    board = stand_in.dashboards.get(uid)
                    if board is None:
                        self._send(404, {"message": "Dashboard not found"})
                        return
                    self._send(200, {"dashboard": board, "meta": {"provisioned": True}})
                    return
                self._send(404, {"message": "Not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Real receivers for alerts, on loopback ports: an SMTP server and an HTTP endpoint."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SmtpSink:
    """An aiosmtpd server that keeps every message it is sent."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd handler hook
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    @contextmanager
    def running(self) -> Iterator[SmtpSink]:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        controller = Controller(self, hostname=self.host, port=self.port)
        controller.start()
        try:
            yield self
        finally:
            controller.stop()

    def connection(self, to: str = "oncall@example.com", **extra: Any) -> dict[str, Any]:
        """An ``alert_smtp`` connection for this server (no TLS, no login)."""
        return {
            "conn_type": "smtp",
            "host": self.host,
            "port": self.port,
            "extra": {
                "from_email": "airflow@example.com",
                "to": to,
                "disable_ssl": True,
                "disable_tls": True,
                "retry_limit": 0,
                "timeout": 5,
                **extra,
            },
        }


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpSink:
    """An HTTP server that answers ``200 ok`` (what Slack answers) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sink.requests.append(
                    Request(self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[HttpSink]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()

    def on(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def webhook_connection(self, path: str = "/alerts") -> dict[str, Any]:
        """An ``alert_webhook`` connection: the whole URL in ``host``."""
        return {"conn_type": "http", "host": f"{self.url}{path}"}

    def slack_connection(self, path: str = "/services/T000/B000/XXXX", **extra) -> dict[str, Any]:
        """An ``alert_slack`` connection: the webhook URL as the password, as Slack gives it."""
        return {"conn_type": "slackwebhook", "password": f"{self.url}{path}", "extra": extra}


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def connection_env(**connections: dict[str, Any]) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables for ``alert_smtp=...`` style keyword arguments."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(c) for conn_id, c in connections.items()}

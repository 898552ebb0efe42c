"""Run the app with uvicorn: in the foreground (`veil serve`) or in a background thread."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

import uvicorn

from .config import LogLevel
from .limits import ConnectionLimits
from .protocol import uvicorn_options

DEFAULT_LIMITS = ConnectionLimits()


def is_loopback(host: str) -> bool:
    """True if every address `host` stands for is a loopback address.

    A literal IP is judged as it is; a name is resolved, and a name that does not resolve, or
    resolves to any other address (`127.evil.example` may point anywhere), is not loopback."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def serve_forever(app: Any, host: str, port: int, log_level: LogLevel = "info",
                  limits: ConnectionLimits | None = DEFAULT_LIMITS) -> None:
    """Serve until stopped; `limits=None` leaves uvicorn's own protocol unguarded."""
    guards = uvicorn_options(limits) if limits is not None else {}
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False,
                timeout_graceful_shutdown=5, **guards)


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves app on a free loopback port in a thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 log_level: LogLevel = "warning", limits: ConnectionLimits = DEFAULT_LIMITS
                 ) -> None:
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.host, self.port = host, self.socket.getsockname()[1]
        config = uvicorn.Config(app, log_level=log_level, lifespan="on", server_header=False,
                                timeout_graceful_shutdown=2,
                                **uvicorn_options(limits))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="veil-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

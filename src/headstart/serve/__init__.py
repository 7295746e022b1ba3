"""`headstart serve`: a run's model behind HTTP (FastAPI on uvicorn). See app.py for the endpoints."""

from __future__ import annotations

import errno
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .app import create_app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: any free port), or a one-line error saying why not."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as e:
        raise UserError(f"cannot listen on {host}:{port}: unknown host ({e.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = "; choose another with --port" if e.errno == errno.EADDRINUSE else ""
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    return sock


def server_for(app, log_level: str):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    max_upload_mb: float = 10.0,
    top_k: int = 3,
    log: Callable[[str], None] = print,
) -> None:
    """Serve a run until interrupted (Ctrl-C)."""
    sock = listen(host, port)  # before loading the model: a busy port fails at once
    try:
        app = create_app(run_dir, max_batch, max_wait_ms, max_upload_mb, top_k)
        bound_host, bound_port = sock.getsockname()[:2]
        log(f"serving {run_dir} on http://{bound_host}:{bound_port}/  (page at /, POST /predict, GET /health)")
        server_for(app, "info").run(sockets=[sock])
    finally:
        sock.close()


@contextmanager
def running_server(app, host: str = "127.0.0.1", port: int = 0):
    """Run `app` with uvicorn in a background thread for the duration of the block; yields its base URL
    (http://host:port, a free port by default). Tests and the load benchmark use it."""
    sock = listen(host, port)
    server = server_for(app, "warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="headstart-serve", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting; see its log above")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


__all__ = ["create_app", "serve", "running_server", "listen"]

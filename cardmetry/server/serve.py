"""`cardmetry serve`: the app under uvicorn, the local executor beside it, logs to stdout and a rotating file.

The port is bound here, before anything starts, and handed to uvicorn: a port that is taken is one clear error
and a non-zero exit, never a server that seems to start and does not answer. Bound to anything but the loopback
interface, every request needs an access token.
"""

from __future__ import annotations

import ipaddress
import logging
import logging.handlers
import os
import secrets
import socket
import sys
import threading
import webbrowser

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server.app import create_app
from cardmetry.store.home import Home

TOKEN_ENV = "CARDMETRY_TOKEN"
LOG_BYTES, LOG_FILES = 5_000_000, 3


class PortTakenError(OSError):
    pass


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or PortTakenError saying who to blame."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; one in use is not
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortTakenError(f"port {port} on {host} is taken ({error.strerror}): is another cardmetry serve "
                             f"running? Choose another with --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_token(host: str) -> str | None:
    """$CARDMETRY_TOKEN where set; otherwise none on the loopback interface and a fresh one elsewhere."""
    given = os.environ.get(TOKEN_ENV)
    if given:
        return given
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def log_to(home: Home) -> None:
    """Log lines to stdout and to HOME/logs/server.log, rotated at 5 MB (three kept)."""
    folder = home.root / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stdout),
        logging.handlers.RotatingFileHandler(folder / "server.log", maxBytes=LOG_BYTES, backupCount=LOG_FILES),
    ]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


def serve(home: Home, host: str, port: int, slots: int, open_browser: bool, demo: bool = False) -> None:
    """Serve until Ctrl-C. With `demo`, an empty home first gets the small synthetic demo dataset (`make run`)."""
    import uvicorn  # imported here: the other commands never need it

    from cardmetry.demo import seed_demo_dataset

    sock = bind(host, port)
    token = access_token(host)
    log_to(home)
    log = logging.getLogger("cardmetry.server")
    if demo and (seeded := seed_demo_dataset(home)):
        log.info("stored the demo dataset %s (16 synthetic cards with exact labels) to train on", seeded)
    shown = "[::1]" if host == "::1" else host
    url = f"http://{shown}:{sock.getsockname()[1]}/" + (f"?token={token}" if token else "")
    executor = LocalExecutor(home, slots)
    executor.start()
    # On loopback there is no token: only requests naming this machine are answered (DNS rebinding).
    hosts = ["127.0.0.1", "localhost", "::1", "[::1]"] if token is None else None
    app = create_app(home, executor, token, allowed_hosts=hosts)
    log.info("cardmetry serving %s at %s (%d training slots)", home.root, url, slots)
    if open_browser and _has_display():
        threading.Timer(1.0, webbrowser.open, [url]).start()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, ws="websockets-sansio"))
    try:
        server.run(sockets=[sock])
    finally:
        executor.close()
        sock.close()


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))

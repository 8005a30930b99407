"""The HTTP API on its own (``kiroku api``), in as many worker processes as asked for.

``kiroku run`` serves the API beside ingest and the views in one process.
Where reads are the load, the API runs on its own in several processes, each
with its own connections, reading the views the view runners keep up to date.
Each worker builds its application from the environment, as ``kiroku run``
does.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import threading

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.auth import TokenRegistry
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from projections.service import Projections

log = logging.getLogger("kiroku.api")


def app_from_environment() -> FastAPI:
    """The application of one worker, from the settings in the environment."""
    settings = Settings.from_env()
    ledger = build_ledger(settings)
    return create_app(ledger, Projections(ledger), TokenRegistry.load(settings.tokens_file))


def _worker(sock: socket.socket) -> None:
    config = uvicorn.Config(
        "api.serve:app_from_environment",
        factory=True,
        log_level="info",
        access_log=False,  # query strings may hold personal data; kiroku logs route templates only
    )
    uvicorn.Server(config).run(sockets=[sock])


def _socket(family: int, *, reuse_port: bool) -> socket.socket:
    # Made with IPPROTO_TCP, so the socket says it is TCP: asyncio then turns Nagle's
    # algorithm off on each connection. (A socket made as uvicorn's worker mode makes
    # it leaves Nagle on, and every keep-alive response waits 40 ms for a delayed ACK.)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _listen(host: str, port: int) -> socket.socket:
    """One listening socket (one worker)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = _socket(family, reuse_port=False)
    sock.bind(address)
    sock.listen(2048)
    return sock


def _listen_each(host: str, port: int, count: int) -> list[socket.socket]:
    """A listening socket per worker, all on one port (SO_REUSEPORT); the kernel spreads connections.

    On one shared socket, the worker that woke first took every connection
    waiting (asyncio accepts them in a loop), so with kept-alive clients one
    worker did all the work. All the sockets listen before any worker starts,
    so connections made while a worker is still starting wait for it instead
    of all going to the first one up.
    """
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sockets: list[socket.socket] = []
    for _ in range(count):
        sock = _socket(family, reuse_port=True)
        sock.bind(sockets[0].getsockname() if sockets else address)  # port 0: the first one's port
        sock.listen(2048)
        sockets.append(sock)
    return sockets


def serve(settings: Settings, workers: int) -> int:
    """Serves until SIGTERM or SIGINT; the settings were checked (and the store reached) by the caller.

    With several workers, each is a process of its own with its own listening
    socket on the port (SO_REUSEPORT). If a worker dies, the others are stopped too and the exit code is
    1, for the supervisor (systemd, compose, Kubernetes) to start the API again.
    """
    print(
        f"kiroku: API on http://{settings.http_host}:{settings.http_port} "
        f"({workers} worker process{'es' if workers > 1 else ''}; OpenAPI at /docs)",
        flush=True,
    )
    if workers == 1:
        _worker(_listen(settings.http_host, settings.http_port))
        return 0
    sockets = _listen_each(settings.http_host, settings.http_port, workers)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(sock,), name=f"kiroku-api-{n}")
        for n, sock in enumerate(sockets)
    ]
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        while not stop.is_set():
            multiprocessing.connection.wait([p.sentinel for p in processes], timeout=0.5)
            ended = [p for p in processes if not p.is_alive()]
            if ended and not stop.is_set():
                gone = ended[0]
                log.error("API worker %s ended (exit %s); stopping the others", gone.pid, gone.exitcode)
                break
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for sock in sockets:
            sock.close()
    return 0 if stop.is_set() else 1

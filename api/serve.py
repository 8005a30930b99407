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


def _listen(host: str, port: int) -> socket.socket:
    # Made from getaddrinfo, so the socket says it is TCP: asyncio then turns Nagle's
    # algorithm off on each connection. (A socket made as uvicorn's worker mode makes
    # it leaves Nagle on, and every keep-alive response waits 40 ms for a delayed ACK.)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, workers: int) -> int:
    """Serves until SIGTERM or SIGINT; the settings were checked (and the store reached) by the caller.

    With several workers, each is a process of its own accepting on one shared
    socket. If a worker dies, the others are stopped too and the exit code is
    1, for the supervisor (systemd, compose, Kubernetes) to start the API again.
    """
    print(
        f"kiroku: API on http://{settings.http_host}:{settings.http_port} "
        f"({workers} worker process{'es' if workers > 1 else ''}; OpenAPI at /docs)",
        flush=True,
    )
    sock = _listen(settings.http_host, settings.http_port)
    if workers == 1:
        _worker(sock)
        return 0
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(sock,), name=f"kiroku-api-{n}") for n in range(workers)
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
        sock.close()
    return 0 if stop.is_set() else 1

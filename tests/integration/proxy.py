"""A loopback TCP proxy the tests can cut: a database or broker that becomes unreachable and comes back."""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import sys
import threading
import time


class Proxy:
    """Forwards 127.0.0.1:<port> to a target. ``cut()`` drops every connection and refuses new ones.

    The target is a host and port, or (``target_port`` None) the path of a Unix socket.
    """

    def __init__(
        self, target_host: str, target_port: int | None, listen_port: int = 0, listen_host: str = "127.0.0.1"
    ) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((listen_host, listen_port))
        self.port: int = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        #: Kafka request API keys whose requests are never passed on (see ``hold``).
        self._held: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.is_set():
                client.close()  # unreachable: the connection is refused at once
                continue
            try:
                upstream = self._connect()
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _connect(self) -> socket.socket:
        host, port = self.target
        if port is not None:
            return socket.create_connection((host, port), timeout=5)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(host)
        except OSError:
            upstream.close()
            raise
        return upstream

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        requests = _Requests()
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client and requests.any_of(data, self._held):
                        # The broker never sees this request nor any after it on this connection.
                        selector.unregister(client)
                        continue
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def upstream_ports(self) -> list[int]:
        """Local ports of the live connections to the target (the target sees them as client ports)."""
        with self._lock:
            ports = []
            for _, upstream in self._pairs:
                with contextlib.suppress(OSError):
                    ports.append(upstream.getsockname()[1])
            return ports

    def cut(self) -> None:
        """The target becomes unreachable: live connections drop, new ones are refused."""
        self._open.clear()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def restore(self) -> None:
        self._open.set()
        self._held = frozenset()

    def hold(self, *api_keys: int) -> None:
        """From now, a connection that sends a Kafka request of one of these API keys hangs.

        The request is not passed on and nothing more is read from that client,
        so it waits for an answer that never comes; the broker's answers to what
        it had already passed on still arrive. ``restore()`` ends it for new requests.
        """
        self._held = frozenset(api_keys)

    def outage(self, seconds: float) -> None:
        self.cut()
        time.sleep(seconds)
        self.restore()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._listener.close()


class _Requests:
    """Follows the Kafka request frames a client sends on one connection (size, then API key)."""

    def __init__(self) -> None:
        self._head = b""  # the start of a frame whose size and API key are not all read yet
        self._skip = 0  # the rest of the current frame's body

    def any_of(self, data: bytes, api_keys: frozenset[int]) -> bool:
        """Whether a request that starts in ``data`` has one of these API keys."""
        found = False
        while data:
            if self._skip:
                taken = min(self._skip, len(data))
                self._skip -= taken
                data = data[taken:]
                continue
            need = 6 - len(self._head)
            self._head, data = self._head + data[:need], data[need:]
            if len(self._head) < 6:
                break
            found = found or int.from_bytes(self._head[4:6], "big") in api_keys
            self._skip = int.from_bytes(self._head[:4], "big") - 2
            self._head = b""
        return found


def main() -> None:
    """``python -m tests.integration.proxy LISTEN_HOST UNIX_SOCKET``: a proxy in a process of its own.

    It prints the port it listens on, then forwards until it is terminated.
    """
    listen_host, unix_socket = sys.argv[1:3]
    proxy = Proxy(unix_socket, None, listen_host=listen_host)
    print(proxy.port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    proxy.close()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()

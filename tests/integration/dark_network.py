"""PostgreSQL behind a network link the tests can take down: packets dropped, nothing closed or refused.

:class:`tests.integration.proxy.Proxy` makes a database that goes away
loudly (connections reset, new ones refused). A host that vanishes, a cable
pulled, a firewall that drops: there the client's kernel hears nothing at
all, and only timeouts can tell. This module builds that on one machine: a
network namespace joined to this one by a virtual Ethernet pair, and in it a
proxy (in a process of its own) from an address on that link to PostgreSQL's
Unix socket. ``dark()`` takes the link down inside the namespace: what is
sent to the proxy is lost without a word, in both directions; ``light()``
brings it back, and connections still open carry on.

It needs root (``ip netns``, ``ip link``), which CI has. Without it the tests
fail and say so; they do not skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IP = shutil.which("ip") or "/usr/sbin/ip"


class DarkNetworkUnavailable(RuntimeError):
    """The namespace or the link could not be made (not root, or no network namespaces)."""


def _ip(*args: str) -> None:
    done = subprocess.run(  # noqa: S603 - iproute2 with the tests' own arguments
        [IP, *args], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise DarkNetworkUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


class DarkNetwork:
    """A proxy to PostgreSQL's Unix socket at ``host:port``, across a link that ``dark()`` takes down."""

    def __init__(self, unix_socket: str) -> None:
        tag = os.getpid() % 9000
        self.namespace = f"kiroku-dark-{tag}"
        self._outside, self._inside = f"kdo{tag}", f"kdi{tag}"
        prefix = f"10.{100 + tag // 64}.{(tag % 64) * 4}"
        self.host = f"{prefix}.2"
        self._relay: subprocess.Popen[str] | None = None
        with contextlib.suppress(DarkNetworkUnavailable):
            _ip("netns", "delete", self.namespace)  # left over by a run that was killed
        try:
            _ip("netns", "add", self.namespace)
            _ip("link", "add", self._outside, "type", "veth", "peer", "name", self._inside)
            _ip("link", "set", self._inside, "netns", self.namespace)
            _ip("addr", "add", f"{prefix}.1/30", "dev", self._outside)
            _ip("link", "set", self._outside, "up")
            self._inner("addr", "add", f"{self.host}/30", "dev", self._inside)
            self._inner("link", "set", self._inside, "up")
            self._inner("link", "set", "lo", "up")
            relay = [sys.executable, "-m", "tests.integration.proxy", self.host, unix_socket]
            self._relay = subprocess.Popen(  # noqa: S603 - this checkout's proxy, in the namespace
                [IP, "netns", "exec", self.namespace, *relay],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._relay.stdout is not None
            line = self._relay.stdout.readline().strip()
            if not line.isdigit():
                raise DarkNetworkUnavailable("the proxy in the namespace did not start")
            self.port = int(line)
        except BaseException:
            self.close()
            raise

    def _inner(self, *args: str) -> None:
        _ip("netns", "exec", self.namespace, "ip", *args)

    def dark(self) -> None:
        """From now, nothing crosses the link either way, and nobody is told."""
        self._inner("link", "set", self._inside, "down")

    def light(self) -> None:
        self._inner("link", "set", self._inside, "up")

    def close(self) -> None:
        if self._relay is not None:
            self._relay.terminate()
            try:
                self._relay.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._relay.kill()
                self._relay.wait(timeout=10)
        with contextlib.suppress(DarkNetworkUnavailable):
            _ip("netns", "delete", self.namespace)  # the link's two ends go with it

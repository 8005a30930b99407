"""Services behind a network link the tests can take down: packets dropped, nothing closed or refused.

:class:`tests.integration.proxy.Proxy` makes a database that goes away
loudly (connections reset, new ones refused). A host that vanishes, a cable
pulled, a firewall that drops: there the client's kernel hears nothing at
all, and only timeouts can tell. This module builds that on one machine: a
network namespace joined to this one by a virtual Ethernet pair, and in it
a broker, or a proxy (in a process of its own) from an address on that link
to PostgreSQL's Unix socket. ``dark()`` takes the link down inside the
namespace: what is sent across it is lost without a word, in both
directions; ``light()`` brings it back, and connections still open carry on.

It needs root (``ip netns``, ``ip link``), which CI has. Without it the tests
fail and say so; they do not skip.
"""

from __future__ import annotations

import contextlib
import itertools
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


_made = itertools.count()


class DarkNetwork:
    """A network namespace whose one link to this one ``dark()`` takes down; ``host`` is its address."""

    def __init__(self) -> None:
        tag, made = os.getpid() % 9000, next(_made) % 4
        self.namespace = f"kiroku-dark-{tag}-{made}"
        self._outside, self._inside = f"kdo{tag}x{made}", f"kdi{tag}x{made}"
        prefix = f"10.{100 + tag // 64}.{(tag % 64) * 4 + made}"
        self.host = f"{prefix}.2"
        self._processes: list[subprocess.Popen[str]] = []
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
        except BaseException:
            self.close()
            raise

    def _inner(self, *args: str) -> None:
        _ip("netns", "exec", self.namespace, "ip", *args)

    def run(self, command: list[str], *, output: bool = False) -> subprocess.Popen[str]:
        """Starts a process in the namespace (its standard output a pipe if ``output``, else dropped);
        ``close()`` stops it."""
        process = subprocess.Popen(  # noqa: S603 - the tests' own commands, in the namespace
            [IP, "netns", "exec", self.namespace, *command],
            cwd=ROOT,
            stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=None if output else subprocess.DEVNULL,
            text=True,
        )
        self._processes.append(process)
        return process

    def forward_to_unix_socket(self, unix_socket: str) -> int:
        """Starts a proxy in the namespace from ``host`` to this Unix socket; the port it listens on."""
        relay = self.run(
            [sys.executable, "-m", "tests.integration.proxy", self.host, unix_socket], output=True
        )
        assert relay.stdout is not None
        line = relay.stdout.readline().strip()
        if not line.isdigit():
            raise DarkNetworkUnavailable("the proxy in the namespace did not start")
        return int(line)

    def dark(self) -> None:
        """From now, nothing crosses the link either way, and nobody is told."""
        self._inner("link", "set", self._inside, "down")

    def light(self) -> None:
        self._inner("link", "set", self._inside, "up")

    def close(self) -> None:
        for process in self._processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        with contextlib.suppress(DarkNetworkUnavailable):
            _ip("netns", "delete", self.namespace)  # the link's two ends go with it

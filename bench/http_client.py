"""A minimal HTTP/1.1 keep-alive client for load: a few microseconds of CPU a request.

The query benchmark's clients share two cores with the server and PostgreSQL;
a general-purpose client (httpx) spent about as much CPU per request as the
server did, so the figures measured the load generator as much as kiroku.
This one sends a request and reads one response (Content-Length or chunked)
on a kept-alive connection, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class Connection:
    """One kept-alive connection to the server."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.fixed = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def request(self, method: str, path: str, params: dict[str, str] | None = None) -> Reply:
        reused = self.writer is not None
        try:
            return await self._exchange(method, path, params)
        except (ConnectionResetError, asyncio.IncompleteReadError):
            # The server may close a kept-alive connection at any moment; as any HTTP
            # client does, send a GET again once on a new connection (never a POST).
            await self.close()
            if not reused or method != "GET":
                raise
            self.reconnects += 1
            return await self._exchange(method, path, params)

    async def _exchange(self, method: str, path: str, params: dict[str, str] | None) -> Reply:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        target = f"{path}?{urlencode(params)}" if params else path
        length = "Content-Length: 0\r\n" if method in {"POST", "PUT"} else ""
        self.writer.write(f"{method} {target} HTTP/1.1\r\n{self.fixed}{length}\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        pairs = (line.partition(":") for line in lines[1:] if line)
        fields = {name.strip().lower(): value.strip() for name, _, value in pairs}
        if "content-length" in fields:
            body = await self.reader.readexactly(int(fields["content-length"]))
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            body = await self.reader.read()
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, body)

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

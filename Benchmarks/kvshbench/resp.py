"""A minimal RESP client (enough for PING, INFO, DBSIZE and checks), no dependencies."""

from __future__ import annotations

import socket

from .config import BenchError


class RedisError(Exception):
    """An error reply (``-ERR ...``) from redis."""


class RespConnection:
    """A blocking RESP2 connection, enough for the few commands used here."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str):
        """Send one command and return its decoded reply; raise RedisError on -ERR."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read_reply()

    def _read_reply(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RedisError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            return [self._read_reply() for _ in range(int(body))]
        raise BenchError(f"unexpected RESP reply {line!r}")


def free_port() -> int:
    """A currently unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_info(text: str) -> dict[str, str]:
    """INFO output as a flat dict."""
    return dict(line.split(":", 1) for line in text.splitlines()
                if line and not line.startswith("#"))

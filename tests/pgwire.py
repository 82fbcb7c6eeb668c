"""A counting proxy for PostgreSQL's wire protocol: a server pointed at it makes its statements
through it, and the test reads exactly how many it sent. ``pg_stat_database`` cannot say that:
it also counts autovacuum's transactions and the test's own reads, and flushes up to 10 s late."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from psycopg.conninfo import conninfo_to_dict, make_conninfo

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104  # codes of the untyped pre-startup requests
STATEMENT_MESSAGES = (b"Q", b"E")  # a simple query, or an Execute of the extended protocol


class StatementCounter:
    """Listens on 127.0.0.1 and forwards each session to the database of ``db_url``."""

    def __init__(self, db_url: str) -> None:
        params = conninfo_to_dict(db_url)
        host = str(params.get("host") or "127.0.0.1")
        port = int(params.get("port") or 5432)
        if host.startswith("/"):  # a socket directory, as the embedded server's
            self.upstream: tuple[int, str | tuple[str, int]] = (
                socket.AF_UNIX,
                f"{host}/.s.PGSQL.{port}",
            )
        else:
            self.upstream = (socket.AF_INET, (host, port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = make_conninfo(
            db_url, host="127.0.0.1", port=self.listener.getsockname()[1], sslmode="disable"
        )
        self.count = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def statements(self) -> int:
        with self.lock:
            return self.count

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                client, _ = self.listener.accept()
                family, address = self.upstream
                server = socket.socket(family)
                server.connect(address)
                threading.Thread(target=self._copy, args=(server, client), daemon=True).start()
                threading.Thread(target=self._count, args=(client, server), daemon=True).start()

    def _copy(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError), source, sink:
            while data := source.recv(65536):
                sink.sendall(data)

    def _count(self, client: socket.socket, server: socket.socket) -> None:
        with contextlib.suppress(OSError, EOFError), client, server:
            for kind, message in _messages(client):
                server.sendall(kind + message)
                if kind in STATEMENT_MESSAGES:
                    with self.lock:
                        self.count += 1


def _messages(sock: socket.socket) -> Iterator[tuple[bytes, bytes]]:
    """The client's messages: untyped ones (kind ``b""``) until the startup message, then typed."""
    while True:
        length = _read(sock, 4)
        body = _read(sock, struct.unpack("!i", length)[0] - 4)
        yield b"", length + body
        if struct.unpack("!i", body[:4])[0] not in (SSL_REQUEST, GSS_REQUEST):
            break  # that was the startup message
    while True:
        kind = _read(sock, 1)
        length = _read(sock, 4)
        yield kind, length + _read(sock, struct.unpack("!i", length)[0] - 4)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

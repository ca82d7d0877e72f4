"""A TCP server on 127.0.0.1 that accepts connections and never answers: a half-open API server;
and DrippingServer, which answers the headers of a long body and then one byte at a time, never
finishing it. Each closes every connection and itself when the test leaves it, or after
``lifetime`` seconds."""
from __future__ import annotations

import socket
import threading
import time


class SilentServer:
    def __init__(self, lifetime: float = 5):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self._deadline = time.monotonic() + lifetime
        self._closed = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set() and time.monotonic() < self._deadline:
            try:
                connection, _ = self._listener.accept()
            except socket.timeout:
                continue
            self._connections.append(connection)
            self._answer(connection)
        self._close_all()

    def _answer(self, connection: socket.socket) -> None:
        """Read nothing, answer nothing."""

    def _close_all(self) -> None:
        for connection in self._connections:
            connection.close()
        self._listener.close()

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._closed.set()
        self._thread.join()


class DrippingServer(SilentServer):
    """Answers any request 200 with the headers of a long body (JSON or XML: a space is both),
    then sends one space every ``interval`` seconds: never long enough for a read timeout, never
    the whole answer."""

    BODY_LENGTH = 1 << 20

    def __init__(self, lifetime: float = 5, interval: float = 0.5):
        super().__init__(lifetime)
        self._interval = interval

    def _answer(self, connection: socket.socket) -> None:
        threading.Thread(target=self._drip, args=(connection,), name="dripping-server", daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                request += chunk
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               + f"Content-Length: {self.BODY_LENGTH}\r\n\r\n".encode())
            while not self._closed.wait(self._interval) and time.monotonic() < self._deadline:
                connection.sendall(b" ")
        except OSError:
            return  # the client gave up, or the test ended and closed the connection

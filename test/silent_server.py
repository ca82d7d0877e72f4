"""A TCP server on 127.0.0.1 that accepts connections and never answers: a half-open API server.
It closes every connection and itself when the test leaves it, or after ``lifetime`` seconds."""
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
            self._connections.append(connection)  # read nothing, answer nothing
        self._close_all()

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

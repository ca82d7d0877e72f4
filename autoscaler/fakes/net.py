"""Socket settings shared by the fake servers."""
import contextlib
import socket


def send_small_replies_at_once(server) -> None:
    """TCP_NODELAY on a server's listening socket (accepted sockets inherit it on Linux and macOS).

    Both fakes write a reply's headers and body in separate small writes; with Nagle's algorithm
    the body waits for the client's delayed ACK, about 40 ms per request on loopback, which made
    every HTTP test and the sandbox several times slower than the work they do.
    """
    listening = getattr(server, "socket", None)
    if listening is not None:
        with contextlib.suppress(OSError):
            listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

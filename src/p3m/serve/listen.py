"""Claim the service's TCP port before anything slow happens, so a busy port fails first."""

from __future__ import annotations

import errno
import socket

from p3m.errors import ConfigError

__all__ = ["listening_socket"]


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for `host`:`port`, ready to hand to uvicorn.

    `host`: a name or address ("127.0.0.1", "0.0.0.0", "::", "localhost"); `port`: 0-65535
    (0: the system picks one; read it back with `sock.getsockname()[1]`). The socket is bound
    before the models load and before the URL is printed, so that a port that is taken or
    not allowed ends `p3m serve` at once with one line, instead of after loading.

    Raises `ConfigError` naming host:port and the reason (in use, not allowed, unknown host).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {host}:{port}: unknown host ({error.strerror})") from error
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        reason = {
            errno.EADDRINUSE: "the port is already in use (another p3m serve? pick another with --port)",
            errno.EACCES: "not allowed (ports below 1024 need privileges)",
            errno.EADDRNOTAVAIL: "this machine has no such address",
        }.get(error.errno, error.strerror or str(error))
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from error
    sock.set_inheritable(True)
    return sock

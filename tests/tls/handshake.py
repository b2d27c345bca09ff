"""Real TLS handshakes for the tests: in memory (two `ssl.SSLObject`s joined by BIOs,
no sockets, so in-process tests are deterministic) and over TCP to a member."""

from __future__ import annotations

import socket
import ssl

from cryptography import x509


def serial_of(der: bytes | None) -> int:
    assert der is not None, "the server presented no certificate"
    return x509.load_der_x509_certificate(der).serial_number


def memory_handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> int:
    """Handshake `client` with `server` in memory; the serial the server presented.
    Raises `ssl.SSLError` when either side refuses."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_side=False, server_hostname="127.0.0.1")
    done = {"srv": False, "cli": False}
    for _ in range(20):
        for name, obj in (("cli", cli), ("srv", srv)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the client finishes first; let the server read its last flight.
            return serial_of(cli.getpeercert(binary_form=True))
    raise AssertionError("handshake did not finish")


def tcp_handshake(port: int, client: ssl.SSLContext, timeout: float = 5.0) -> int:
    """Connect to 127.0.0.1:`port` with `client`; the serial the server presented."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return serial_of(tls.getpeercert(binary_form=True))


def peer_port_accepts(port: int, client: ssl.SSLContext, timeout: float = 5.0) -> bool:
    """Whether a TLS connection made with `client` gets an HTTP answer from the server
    at `port`. Under TLS 1.3 the client's side of the handshake finishes before the
    server has checked the client's certificate, so a refusal shows on the first
    read (an alert, a reset or EOF), not in `do_handshake`."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
            client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /raft/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return tls.recv(64).startswith(b"HTTP/1.1 ")
    except (ssl.SSLError, ConnectionError):
        return False

"""A stand-in for ``kubectl``, just enough for the e2e helpers' unit tests.

Behaviour is chosen by environment variables:

- ``get --raw /version``: FAKE_VERSION = ok (default) | refused | hang
- ``auth can-i ...``: FAKE_CAN_I = yes (default) | no
- ``get crd ...``: FAKE_CRD_EXISTS = 1 prints the CRD's name
- ``port-forward ... :<remote>``: FAKE_FORWARD = ok (default) | fail | silent. With ok
  it listens on a free loopback port, prints kubectl's "Forwarding from" lines, then a
  flood of "Handling connection for" lines (more than a pipe holds, so a reader that
  does not drain its pipes stalls it), and relays every connection to FAKE_BACKEND
  (host:port), printing a "Handling connection" line for each, as kubectl does.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time


def relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def port_forward(remote: str) -> int:
    mode = os.environ.get("FAKE_FORWARD", "ok")
    if mode == "fail":
        print(
            "error: unable to forward port because pod is not running. Current status=Pending",
            file=sys.stderr,
        )
        return 1
    if mode == "silent":
        time.sleep(60)
        return 1
    host, _, port = os.environ["FAKE_BACKEND"].rpartition(":")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    local = listener.getsockname()[1]
    print(f"Forwarding from 127.0.0.1:{local} -> {remote}", flush=True)
    print(f"Forwarding from [::1]:{local} -> {remote}", flush=True)
    for _ in range(20_000):
        print(f"Handling connection for {local}")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        print(f"Handling connection for {local}", flush=True)
        upstream = socket.create_connection((host, int(port)))
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=relay, args=(a, b), daemon=True).start()


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--request-timeout")]
    if args[:3] == ["get", "--raw", "/version"]:
        mode = os.environ.get("FAKE_VERSION", "ok")
        if mode == "hang":
            time.sleep(60)
        if mode == "refused":
            print(
                "The connection to the server 127.0.0.1:6443 was refused - "
                "did you specify the right host or port?",
                file=sys.stderr,
            )
            return 1
        print(json.dumps({"major": "1", "minor": "30", "gitVersion": "v1.30.0"}))
        return 0
    if args[:2] == ["auth", "can-i"]:
        answer = os.environ.get("FAKE_CAN_I", "yes")
        print(answer)
        return 0 if answer == "yes" else 1
    if args[:2] == ["get", "crd"]:
        if os.environ.get("FAKE_CRD_EXISTS") == "1":
            print(f"customresourcedefinition.apiextensions.k8s.io/{args[2]}")
        return 0
    if args and args[0] == "port-forward":
        remote = next(a for a in args if a.startswith(":"))[1:]
        return port_forward(remote)
    print(f"fake kubectl: unsupported {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

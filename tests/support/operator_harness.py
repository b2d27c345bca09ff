"""Run the real operator (``raftkv_operator.main.run``) against the Kubernetes stand-in.

Shared by the emulator tests here and the local end-to-end run in ``e2e/local``: kopf
runs in its own thread and loop (see ../shared/notes/operator-testing.md), logs in to
the emulator through a login handler, and reaches the API through an ``ApiClient``
pointed at the same URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import kopf
import kubernetes
from kubernetes.client import ApiClient

from raftkv_operator.members import HttpAdmin, MemberAdmin, MemberProbe
from raftkv_operator.reconcile import OperatorConfig
from support.crd_schema import ObjectSchema, load_crd
from support.kube_emulator import CustomSchema, EmulatorThread, KubeEmulator
from support.structural import check_crd

NS = "default"


def crd_schema(schema: dict[str, Any]) -> CustomSchema:
    """Defaulting, pruning, OpenAPI and CEL validation, as the apiserver applies them."""
    return CustomSchema(admit=ObjectSchema(schema).admit)


def start_emulator(**options: Any) -> EmulatorThread:
    """An emulator serving the RaftKV CRD with its defaults and validation."""
    emulator = KubeEmulator(**options)
    emulator.register_crd(load_crd(), crd_schema, check_crd)
    return EmulatorThread(emulator)


class OperatorThread:
    """The operator, as ``raftkv operator`` runs it, in a background thread."""

    def __init__(
        self,
        url: str,
        config: OperatorConfig,
        *,
        probe: MemberProbe | None = None,
        admin_for: Callable[[Sequence[str]], MemberAdmin] = HttpAdmin,
    ) -> None:
        self.url = url
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.api = ApiClient(kubernetes.client.Configuration(host=url))

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, default_namespace=NS)

        def target() -> None:
            from raftkv_operator.main import run

            try:
                run(
                    config,
                    api=self.api,
                    login=login,
                    stop_flag=self.stop,
                    ready_flag=self.ready,
                    probe=probe,
                    admin_for=admin_for,
                )
            except BaseException as exc:  # surfaced by __enter__/__exit__
                self.error = exc
                self.ready.set()

        self._thread = threading.Thread(target=target, name="raftkv-operator", daemon=True)

    def __enter__(self) -> OperatorThread:
        self._thread.start()
        if not self.ready.wait(timeout=20):
            raise TimeoutError("the operator did not become ready")
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=20)
        self.api.close()  # type: ignore[no-untyped-call]
        if self._thread.is_alive():
            raise TimeoutError("the operator did not stop")

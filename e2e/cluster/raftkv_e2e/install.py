"""Installing and uninstalling the operator the two ways a user does.

``manifests``: ``kubectl apply -k manifests/`` exactly as the README says, then one
strategic merge patch of the operator Deployment so it runs the image under test and
hands it to the members (``RAFTKV_MEMBER_IMAGE``); uninstall is ``kubectl delete -k``.

``helm``: ``helm install`` of ``charts/raftkv`` with ``image.repository``/``image.tag``
set to the image under test; uninstall is ``helm uninstall`` followed by deleting the
CRD (Helm never deletes what a chart ships in ``crds/``) and the namespace that
``--create-namespace`` made.

Either way the installed objects are listed up front (``kubectl kustomize``, ``helm
get manifest``) so the uninstall check knows exactly what must be gone afterwards.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import yaml

from raftkv_e2e import state
from raftkv_e2e.config import (
    CRD_NAME,
    OPERATOR_CONTAINER,
    OPERATOR_DEPLOYMENT,
    E2EConfig,
    split_image,
)
from raftkv_e2e.kubectl import Kubectl, ToolError, helm_for
from raftkv_e2e.state import ObjectRef
from raftkv_e2e.wait import NotYet, wait_for

log = logging.getLogger("e2e.install")

#: The file names kustomize (and so ``kubectl apply -k``) recognises.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CRD_REF = ObjectRef("CustomResourceDefinition", "apiextensions.k8s.io/v1", CRD_NAME, None)


@dataclass
class Installer:
    config: E2EConfig
    kubectl: Kubectl
    inventory: list[ObjectRef] = field(default_factory=list)
    deployment: ObjectRef | None = None
    installed: bool = False
    created_namespace: bool = False

    # ------------------------------------------------------------------ install

    def install(self) -> None:
        """Install and wait for the operator. ``installed`` turns true before the first
        change to the cluster, so a half-done install is uninstalled too."""
        if self.config.install == "helm":
            self._install_helm()
        else:
            self._install_manifests()
        self.wait_operator_ready()

    def _install_manifests(self) -> None:
        directory = self.config.manifests_dir
        if not any((directory / name).is_file() for name in KUSTOMIZATION_FILES):
            raise AssertionError(
                f"{directory} has no kustomization ({', '.join(KUSTOMIZATION_FILES)})"
            )
        rendered = self.kubectl.run("kustomize", str(directory)).stdout
        self.inventory = state.inventory(rendered, self.config.operator_namespace)
        crs = [ref for ref in self.inventory if ref.kind == "RaftKV"]
        if crs:
            raise AssertionError(
                f"the kustomization in manifests/ includes RaftKV objects {crs}: a first "
                "`kubectl apply -k` would fail before the CRD is established"
            )
        self.deployment = self._operator_deployment()
        log.info("kubectl apply -k %s (%d objects)", directory, len(self.inventory))
        self.installed = True
        self.kubectl.api("apply", "-k", str(directory))
        dep = self._get_deployment()
        patch = state.operator_image_patch(
            dep, self.config.image, self.config.pull_policy, OPERATOR_CONTAINER
        )
        assert self.deployment is not None
        assert self.deployment.namespace is not None
        self.kubectl.api(
            "patch",
            self.deployment.resource,
            self.deployment.name,
            "-n",
            self.deployment.namespace,
            "--type",
            "strategic",
            "-p",
            json.dumps(patch),
        )

    def _install_helm(self) -> None:
        helm = helm_for(self.config)
        ns = self.config.operator_namespace
        existing = self.kubectl.get("namespace", ns)
        self.created_namespace = existing is None
        repository, tag = split_image(self.config.image)
        args = [
            "install",
            self.config.release,
            str(self.config.chart_dir),
            "-n",
            ns,
            "--create-namespace",
            "--set-string",
            f"image.repository={repository}",
            "--set-string",
            f"image.tag={tag}",
        ]
        if self._chart_has_pull_policy():
            args += ["--set-string", f"image.pullPolicy={self.config.pull_policy}"]
        self.inventory = [CRD_REF]
        if self.created_namespace:
            self.inventory.append(ObjectRef("Namespace", "v1", ns, None))
        log.info("helm %s", " ".join(args))
        self.installed = True
        helm.run(*args, timeout=300)
        manifest = helm.run("get", "manifest", self.config.release, "-n", ns, timeout=120).stdout
        self.inventory += state.inventory(manifest, ns)
        self.deployment = self._operator_deployment()

    def _chart_has_pull_policy(self) -> bool:
        try:
            values = yaml.safe_load((self.config.chart_dir / "values.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return False
        image = (values or {}).get("image") if isinstance(values, dict) else None
        return isinstance(image, dict) and "pullPolicy" in image

    def _operator_deployment(self) -> ObjectRef:
        deployments = [ref for ref in self.inventory if ref.kind == "Deployment"]
        for ref in deployments:
            if ref.name == OPERATOR_DEPLOYMENT:
                return ref
        if len(deployments) == 1:
            return deployments[0]
        raise AssertionError(f"cannot tell the operator Deployment among {deployments}")

    def _get_deployment(self) -> state.JSON:
        ref = self.deployment
        assert ref is not None
        dep = self.kubectl.get(ref.resource, ref.name, ref.namespace)
        if dep is None:
            raise AssertionError(f"{ref} does not exist after the install")
        return dep

    def operator_pods(self) -> list[state.JSON]:
        dep = self._get_deployment()
        labels = dep["spec"]["selector"].get("matchLabels") or {}
        assert self.deployment is not None
        return self.kubectl.list("pods", self.deployment.namespace, state.selector_string(labels))

    def wait_operator_ready(self) -> None:
        started = time.monotonic()

        def ready() -> bool:
            # Only pods of the image under test: the manifests' first pod (the published
            # image, replaced at once by the patch) may well fail to pull on a test node.
            pods = [p for p in self.operator_pods() if state.runs_image(p, self.config.image)]
            problems = state.pod_problems(pods)
            if problems:
                raise AssertionError(
                    f"the operator cannot start: {problems}. Is {self.config.image} "
                    "available to the cluster's nodes (kind load docker-image ...)?"
                )
            why = state.deployment_not_ready(self._get_deployment())
            if why:
                raise NotYet(why)
            return True

        wait_for("the operator Deployment to be available", ready, self.config.startup_timeout)
        log.info("operator available after %.0fs", time.monotonic() - started)

    def operator_deployment(self) -> state.JSON:
        return self._get_deployment()

    def operator_logs(self, tail: int = 80) -> str:
        ref = self.deployment
        if ref is None or ref.namespace is None:
            return "(no operator Deployment)"
        return self.kubectl.text(
            "logs",
            f"deployment/{ref.name}",
            "-n",
            ref.namespace,
            f"--tail={tail}",
            "--all-containers",
        )

    # ------------------------------------------------------------------ uninstall

    def uninstall(self) -> None:
        """Start the uninstall the way a user would; :meth:`remaining` tells progress."""
        if self.config.install == "helm":
            helm = helm_for(self.config)
            ns = self.config.operator_namespace
            res = helm.run("uninstall", self.config.release, "-n", ns, timeout=300, check=False)
            if res.returncode != 0 and "not found" not in res.stderr:
                raise ToolError(res.argv, res.stderr.strip(), res.returncode)
            self.kubectl.delete(CRD_REF.resource, CRD_NAME)
            if self.created_namespace:
                self.kubectl.delete("namespace", ns)
        else:
            self.kubectl.api(
                "delete", "-k", str(self.config.manifests_dir), "--ignore-not-found", "--wait=false"
            )
        self.installed = False

    def remaining(self) -> list[ObjectRef]:
        """Installed objects that still exist (including ones being deleted)."""
        left = []
        refs = self.inventory if CRD_REF in self.inventory else [*self.inventory, CRD_REF]
        for ref in refs:
            args = ["get", ref.resource, ref.name, "--ignore-not-found", "-o", "name"]
            if ref.namespace:
                args += ["-n", ref.namespace]
            res = self.kubectl.api(*args, check=False)
            if res.returncode != 0:
                if "doesn't have a resource type" in res.stderr:
                    continue  # its CRD is gone, so is it
                raise ToolError(res.argv, res.stderr.strip(), res.returncode)
            if res.stdout.strip():
                left.append(ref)
        return left

"""Helpers of the real-cluster end-to-end suite (``e2e/cluster``).

Everything that talks to a cluster goes through ``kubectl`` (and ``helm`` for the chart
path), as a person would, so the suite runs unchanged against kind, k3d, minikube or a
cloud cluster with whatever credentials ``KUBECONFIG`` carries. The pure parts (output
parsing, the write log, orphan classification, patches) are unit-tested without a
cluster in ``tests/e2e_helpers``.
"""

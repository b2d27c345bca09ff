"""Helpers shared by the test suites (``tests/``, ``e2e/local``) and the bench scripts.

``tests/`` is on pytest's ``pythonpath`` (pyproject.toml), so these import as
``support.<module>`` from any test folder under any import mode:

- ``wait``: :func:`~support.wait.wait_for`, the one poll-with-a-deadline;
- ``members``: free ports and :func:`~support.members.spawn_member`, the one way to
  start a ``raftkv serve`` process (or any other server) with its output in a log file;
- the Kubernetes API stand-in: ``kube_emulator`` (the API server), ``crd_schema``
  (defaulting, pruning, OpenAPI and CEL validation of custom resources),
  ``cel_rules`` (CEL), ``structural`` (the apiextensions checks of a CRD),
  ``operator_harness`` (the real operator in a thread against the stand-in) and
  ``fake_members`` (members played in memory, for the operator's handlers);
- ``fake_kubectl``: a stand-in for ``kubectl``, run as a script.
"""

"""Shared set-up for the operator tests.

The helpers (``planner_world``, ``kube_emulator``, ``crd_schema``) sit next to the
tests and are imported by plain module name; putting this folder on ``sys.path``
keeps that working under any pytest import mode. This folder has no ``__init__.py``
on purpose: as a package it would be imported as ``operator`` and shadow the stdlib.
"""

from __future__ import annotations

import sys
from pathlib import Path

import kmock

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# kube_emulator.py subclasses kmock internals that change between releases.
KMOCK_PINNED = "0.8"
if kmock.__version__ != KMOCK_PINNED:
    raise ImportError(f"tests/operator need kmock=={KMOCK_PINNED}, found {kmock.__version__}")

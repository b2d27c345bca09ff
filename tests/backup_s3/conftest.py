"""A real S3 endpoint (moto's standalone server on 127.0.0.1, IAM enforced) and a real
one-member cluster, shared by a module's tests; a fresh bucket per test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.harness import LocalCluster
from support.moto_s3 import MotoS3

TMP_ONLY_POLICY: list[dict[str, Any]] = [
    # May read, list and delete, but write only temporary objects: a save as this user
    # uploads and verifies, then is refused the copy to the final name.
    {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:DeleteObject", "s3:ListBucket"],
        "Resource": "*",
    },
    {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::*/*.raftkv-tmp-*"},
]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(
        tmp_path_factory.mktemp("moto") / "moto.log",
        {"nobody": None, "tmponly": TMP_ONLY_POLICY},
    )
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def bucket(s3: MotoS3) -> str:
    name = "raftkv-" + secrets.token_hex(6)
    cl = s3.client()
    try:
        cl.create_bucket(Bucket=name)
    finally:
        cl.close()
    return name


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One running member to back up (module-wide: starting one costs a second)."""
    with LocalCluster(tmp_path_factory.mktemp("source"), 1) as c:
        yield c


def data_dir_absent_or_empty(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())

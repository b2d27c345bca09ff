"""A real S3 endpoint on loopback: moto's standalone server (``moto[server]``) as a
process on a free 127.0.0.1 port, speaking the S3 HTTP API, with IAM enforced.

moto checks signatures and IAM policies once its first ``INITIAL_NO_AUTH_ACTION_COUNT``
requests are done; :class:`MotoS3` spends exactly those on creating the users it is
asked for (each with an access key and, if given, an inline policy), so every request a
test makes is authenticated like on a real store: a user with no policy gets
``AccessDenied``, an unknown key ``InvalidAccessKeyId``. ``admin`` (allowed
everything) always exists. Readiness is probed with a bare TCP connect, which moto
does not count as a request.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.members import free_port, spawn_member
from support.wait import wait_for

REGION = "us-east-1"
ALLOW_ALL: list[dict[str, Any]] = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        """The AWS variables boto3 (and so ``raftkv snapshot``) reads."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
        }


class MotoS3:
    """Start with :meth:`start`; always :meth:`close` (it reaps the process)."""

    def __init__(
        self,
        log_path: Path,
        users: Mapping[str, Sequence[dict[str, Any]] | None] | None = None,
    ) -> None:
        """``users``: name -> IAM policy statements (None: no policy at all)."""
        self.log_path = log_path
        self.users: dict[str, Sequence[dict[str, Any]] | None] = {
            "admin": ALLOW_ALL,
            **(users or {}),
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.credentials: dict[str, Credentials] = {}

    def start(self, timeout: float = 30.0) -> MotoS3:
        setup = sum(2 + (policy is not None) for policy in self.users.values())
        self.proc = spawn_member(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            self.log_path,
            env={"INITIAL_NO_AUTH_ACTION_COUNT": str(setup)},
        )
        wait_for(f"moto S3 server on {self.url}", self._listening, timeout)
        self._create_users()
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"moto server exited with {self.proc.returncode}: "
                f"{self.log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _create_users(self) -> None:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        try:
            for name, policy in self.users.items():
                iam.create_user(UserName=name)
                if policy is not None:
                    iam.put_user_policy(
                        UserName=name,
                        PolicyName=f"{name}-policy",
                        PolicyDocument=json.dumps(
                            {"Version": "2012-10-17", "Statement": list(policy)}
                        ),
                    )
                key = iam.create_access_key(UserName=name)["AccessKey"]
                self.credentials[name] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        finally:
            iam.close()

    def env(self, user: str = "admin") -> dict[str, str]:
        """The environment of a ``raftkv snapshot`` run as ``user`` against this server."""
        return {**self.credentials[user].env(), "AWS_ENDPOINT_URL": self.url}

    def client(self, user: str = "admin") -> Any:
        """A boto3 S3 client as ``user`` (path-style, as for any non-AWS endpoint)."""
        import boto3
        from botocore.config import Config

        creds = self.credentials[user]
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            config=Config(s3={"addressing_style": "path"}),
        )

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

"""Backups in an S3-compatible object store: `raftkv snapshot save|restore|status` with
`s3://bucket/key` URLs, and `raftkv snapshot list|prune` of a prefix for retention.

An object holds exactly the bytes of a backup file (`backup.py`), plus user metadata
`raftkv-sha256` (hex SHA-256 of the bytes), `raftkv-applied-index` and `raftkv-keys`.

- Saving never leaves a half-written or unverified object under the final name: the
  bytes go to `<key>.raftkv-tmp-<random>`, are read back and compared with their
  SHA-256, and only then copied (server side, metadata included) to the final key;
  the temporary object is deleted in every case. A save killed midway leaves at most
  that clearly temporary object, which `list` and `prune` skip and `prune` deletes
  once it is an hour old.
- Loading checks the SHA-256 against the metadata and then decodes the whole snapshot
  (`backup.verify`, the same check as for a file) before anyone restores from it.
- Every failure is an `S3Error` (a `BackupError`) with a one-line message naming the
  case: bucket missing, access denied, object missing, corrupt object, endpoint
  unreachable, no credentials.

Endpoint, region and credentials come from `--s3-endpoint` / `--s3-region` or from the
usual AWS variables (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_REGION`,
`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, profiles, ...: boto3's own chain). With an explicit endpoint
(MinIO, Ceph, a loopback test server) path-style addressing is used, which every
S3-compatible server accepts. boto3 is imported only when an S3 URL is used.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .backup import BackupError, SnapshotInfo, verify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SCHEME = "s3://"
META_SHA256 = "raftkv-sha256"
META_INDEX = "raftkv-applied-index"
META_KEYS = "raftkv-keys"
TMP_MARK = ".raftkv-tmp-"
STALE_TMP = dt.timedelta(hours=1)
"""A temporary object older than this is a leftover of a save that died; prune it."""
DEFAULT_REGION = "us-east-1"
DELETE_BATCH = 1000
"""DeleteObjects takes at most 1000 keys."""


class S3Error(BackupError):
    """An object-store operation that failed, in one line a person can act on."""


@dataclass(frozen=True, slots=True)
class S3Url:
    bucket: str
    key: str
    """"" or ending in "/" for a prefix."""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")


def is_s3_url(text: str) -> bool:
    return text.lower().startswith(SCHEME)


def parse_url(text: str) -> S3Url:
    """`s3://bucket/key` (or `s3://bucket/prefix/`, `s3://bucket`)."""
    if not is_s3_url(text):
        raise S3Error(f"{text!r} is not an s3://bucket/key URL")
    bucket, _, key = text[len(SCHEME) :].partition("/")
    if not bucket or any(c.isspace() for c in bucket):
        raise S3Error(f"{text!r} names no bucket; expected s3://bucket/key")
    if len(key.encode()) > 1024:
        raise S3Error(f"{text!r}: an S3 key is at most 1024 bytes")
    return S3Url(bucket, key)


@dataclass(frozen=True, slots=True)
class S3Options:
    endpoint_url: str | None = None
    """None: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself."""
    region: str | None = None
    """None: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1."""

    def resolved_endpoint(self) -> str | None:
        url = (
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        if url is not None and not url.lower().startswith(("http://", "https://")):
            raise S3Error(f"S3 endpoint {url!r} is not an http:// or https:// URL")
        return url

    def resolved_region(self) -> str:
        return (
            self.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION
        )


@dataclass(frozen=True, slots=True)
class StoredObject:
    url: S3Url
    size: int
    last_modified: dt.datetime


@dataclass(frozen=True, slots=True)
class Loaded:
    data: bytes
    info: SnapshotInfo
    sha256: str


@dataclass(frozen=True, slots=True)
class PruneResult:
    kept: list[StoredObject]
    deleted: list[StoredObject]
    """Backups beyond the newest `keep`, oldest first."""
    stale_temporaries: list[StoredObject]


class Store:
    """One S3 endpoint; each method maps the SDK's errors to `S3Error`."""

    def __init__(self, options: S3Options | None = None) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        opts = options or S3Options()
        self.endpoint = opts.resolved_endpoint()
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path"} if self.endpoint else None,
        )
        try:
            self.client: S3Client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint, region_name=opts.resolved_region(), config=config
            )
        except (BotoCoreError, ValueError) as exc:  # a bad profile, region or endpoint
            raise S3Error(f"cannot set up the S3 client: {exc}") from None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- save / load ---------------------------------------------------------------

    def save(self, url: S3Url, data: bytes, info: SnapshotInfo) -> str:
        """Upload verified snapshot bytes to `url` (a key; see `backup_key` for a
        prefix); returns their SHA-256."""
        if url.is_prefix:
            raise S3Error(f"{url} names a prefix, not an object")
        digest = hashlib.sha256(data).hexdigest()
        tmp = S3Url(url.bucket, f"{url.key}{TMP_MARK}{secrets.token_hex(6)}")
        meta = {META_SHA256: digest, META_INDEX: str(info.applied_index), META_KEYS: str(info.keys)}
        try:
            with self._errors("upload to", tmp):
                self.client.put_object(
                    Bucket=tmp.bucket,
                    Key=tmp.key,
                    Body=data,
                    Metadata=meta,
                    ContentType="application/octet-stream",
                )
            back, back_meta = self._get(tmp)
            got = hashlib.sha256(back).hexdigest()
            if got != digest or back_meta.get(META_SHA256) != digest:
                raise S3Error(
                    f"upload to {url} did not verify: the stored copy has SHA-256 {got}, "
                    f"expected {digest}; nothing was saved"
                )
            with self._errors("copy to", url):
                self.client.copy_object(
                    Bucket=url.bucket,
                    Key=url.key,
                    CopySource={"Bucket": tmp.bucket, "Key": tmp.key},
                    MetadataDirective="COPY",
                )
        finally:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=tmp.bucket, Key=tmp.key)
        return digest

    def load(self, url: S3Url) -> Loaded:
        """Download and check: the SHA-256 recorded at upload, then the snapshot itself."""
        if url.is_prefix:
            raise S3Error(f"{url} names a prefix, not an object")
        data, meta = self._get(url)
        want = meta.get(META_SHA256)
        if not want:
            raise S3Error(
                f"{url} is not a raftkv backup: it has no {META_SHA256} metadata "
                "(only `raftkv snapshot save` writes it)"
            )
        got = hashlib.sha256(data).hexdigest()
        if got != want.lower():
            raise S3Error(f"{url} is corrupt: its SHA-256 is {got}, but {want} was uploaded")
        try:
            info = verify(data, str(url))
        except BackupError as exc:
            raise S3Error(str(exc)) from None
        return Loaded(data, info, got)

    def _get(self, url: S3Url) -> tuple[bytes, dict[str, str]]:
        with self._errors("download", url):
            resp = self.client.get_object(Bucket=url.bucket, Key=url.key)
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        return data, {k.lower(): v for k, v in resp.get("Metadata", {}).items()}

    # --- list / prune --------------------------------------------------------------

    def list_objects(self, prefix: S3Url) -> tuple[list[StoredObject], list[StoredObject]]:
        """(backups, temporaries) under `prefix`, each oldest first (ties by key)."""
        backups: list[StoredObject] = []
        temporaries: list[StoredObject] = []
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=prefix.bucket, Prefix=prefix.key
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj.get("Key", "")
                    item = StoredObject(
                        S3Url(prefix.bucket, key),
                        int(obj.get("Size", 0)),
                        obj.get("LastModified", dt.datetime.min.replace(tzinfo=dt.UTC)),
                    )
                    (temporaries if TMP_MARK in key else backups).append(item)
        order = lambda o: (o.last_modified, o.url.key)  # noqa: E731
        return sorted(backups, key=order), sorted(temporaries, key=order)

    def prune(
        self, prefix: S3Url, keep: int, *, dry_run: bool = False, now: dt.datetime | None = None
    ) -> PruneResult:
        """Delete all but the newest `keep` backups under `prefix` (and temporaries
        older than STALE_TMP). Every object under the prefix counts as a backup: give
        each cluster a prefix of its own."""
        if keep < 1:
            raise S3Error(f"--keep must be at least 1, got {keep}")
        backups, temporaries = self.list_objects(prefix)
        cut = max(0, len(backups) - keep)
        doomed, kept = backups[:cut], backups[cut:]
        now = now or dt.datetime.now(dt.UTC)
        stale = [t for t in temporaries if now - t.last_modified > STALE_TMP]
        if not dry_run:
            self._delete(prefix, [*doomed, *stale])
        return PruneResult(kept, doomed, stale)

    def _delete(self, prefix: S3Url, objects: list[StoredObject]) -> None:
        for i in range(0, len(objects), DELETE_BATCH):
            batch = objects[i : i + DELETE_BATCH]
            with self._errors("delete under", prefix):
                resp = self.client.delete_objects(
                    Bucket=prefix.bucket,
                    Delete={"Objects": [{"Key": o.url.key} for o in batch], "Quiet": True},
                )
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                raise S3Error(
                    f"could not delete {len(errors)} object(s) under {prefix}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                )

    # --- errors --------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str, url: S3Url) -> Iterator[None]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            yield
        except ClientError as exc:
            raise S3Error(self._client_error(action, url, exc)) from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise S3Error(
                f"cannot {action} {url}: {exc} (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or another source boto3 reads)"
            ) from None
        except ConnectionError as exc:
            where = self.endpoint or "the AWS S3 endpoint"
            raise S3Error(f"cannot reach {where} to {action} {url}: {exc}") from None
        except BotoCoreError as exc:
            raise S3Error(f"cannot {action} {url}: {exc}") from None

    @staticmethod
    def _client_error(action: str, url: S3Url, exc: Exception) -> str:
        response = getattr(exc, "response", {}) or {}
        err = response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = str(err.get("Message", "")) or code
        if code == "NoSuchBucket":
            return f"cannot {action} {url}: bucket {url.bucket!r} does not exist"
        if code in ("NoSuchKey", "NotFound") or status == 404:
            return f"cannot {action} {url}: no such object"
        if status == 403 or code in (
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
            "AllAccessDisabled",
        ):
            return (
                f"cannot {action} {url}: access denied ({code or status}: {detail}); "
                "check the credentials and the bucket policy"
            )
        return f"cannot {action} {url}: {code or status}: {detail}"


def backup_key(prefix: S3Url, info: SnapshotInfo, now: dt.datetime | None = None) -> S3Url:
    """The object a save to a prefix writes: `<prefix>raftkv-<UTC time>-<index>.snapshot`,
    with the index zero-padded, so keys sort by time, then index, and say what they hold."""
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return S3Url(prefix.bucket, f"{prefix.key}raftkv-{when}-{info.applied_index:012d}.snapshot")

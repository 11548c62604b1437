"""The one module that reads and writes objects (boto3 only; works with MinIO and with AWS S3).

Every upload records the object's sha256 as user metadata, computed locally before the bytes leave,
so the manifest can list checksums without re-reading objects and ``edgeops runs verify`` can prove them.
Steps build a store from the environment; the Airflow side passes the boto3 client of its connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.exceptions import IntegrityError, StorageError
from tasks.core.keys import parse_s3_uri, unsafe_key_reason
from tasks.core.names import ARTIFACTS_BUCKET, ENV_BUCKET, ENV_ENDPOINT

if TYPE_CHECKING:
    from tasks.core.results import ArtifactRef


@dataclass(frozen=True)
class Artifact:
    name: str
    key: str
    sha256: str
    size_bytes: int
    version_id: str | None = None  # set when the bucket is versioned (the artifacts bucket is)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "sha256": self.sha256, "size_bytes": self.size_bytes}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_client(endpoint: str | None, access_key: str | None, secret_key: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )


class ArtifactStore:
    """Object I/O on one bucket; other buckets are reachable through full s3:// URIs."""

    def __init__(self, client: Any, bucket: str = ARTIFACTS_BUCKET) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_env(cls) -> ArtifactStore:
        endpoint = os.environ.get(ENV_ENDPOINT)
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        client = make_client(endpoint, key, secret)
        return cls(client, os.environ.get(ENV_BUCKET, ARTIFACTS_BUCKET))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def ref(self, artifact: Artifact) -> ArtifactRef:
        """The hand-off form of an artifact this store just wrote."""
        from tasks.core.results import ArtifactRef

        return ArtifactRef(self.uri(artifact.key), artifact.sha256, artifact.size_bytes, artifact.version_id)

    def fetch(self, ref: ArtifactRef, dest: str | Path) -> Path:
        """Download exactly ``ref`` (its version when known) and check its sha256; a mismatch is fatal."""
        bucket, key = parse_s3_uri(ref.uri)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        extra = {"VersionId": ref.version_id} if ref.version_id else None
        self._call("download", key,
                   lambda: self.client.download_file(bucket, key, str(tmp), ExtraArgs=extra), bucket=bucket)
        digest = sha256_file(tmp)
        if digest != ref.sha256:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(
                f"{ref.uri} (version {ref.version_id or 'unversioned'}) has sha256 {digest[:16]}…, but it was "
                f"handed over as {ref.sha256[:16]}…: the object was overwritten or corrupted; re-run the producing step"
            )
        tmp.replace(dest)
        return dest

    # --- writes -------------------------------------------------------------------------------------------
    def put_file(self, key: str, path: str | Path, name: str | None = None) -> Artifact:
        path = Path(path)
        digest, size = sha256_file(path), path.stat().st_size
        self._call(
            "upload",
            key,
            lambda: self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"Metadata": {"sha256": digest}}),
        )
        # upload_file returns nothing; the version it wrote is the newest one with our sha256
        head = self._call("head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        if head.get("Metadata", {}).get("sha256") != digest:
            raise StorageError(f"s3://{self.bucket}/{key} was overwritten while it was being uploaded")
        return Artifact(name or path.name, key, digest, size, head.get("VersionId"))

    def put_bytes(self, key: str, data: bytes, name: str | None = None, content_type: str = "") -> Artifact:
        digest = hashlib.sha256(data).hexdigest()
        extra = {"ContentType": content_type} if content_type else {}
        resp = self._call(
            "put",
            key,
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, Metadata={"sha256": digest}, **extra
            ),
        )
        return Artifact(name or key.rsplit("/", 1)[-1], key, digest, len(data), resp.get("VersionId"))

    def put_json(self, key: str, obj: Any, name: str | None = None) -> Artifact:
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        return self.put_bytes(key, data, name, content_type="application/json")

    # --- reads --------------------------------------------------------------------------------------------
    def get_file(self, key: str, dest: str | Path, bucket: str | None = None) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        self._call("download", key, lambda: self.client.download_file(bucket or self.bucket, key, str(tmp)))
        tmp.replace(dest)
        return dest

    def get_bytes(self, key: str, bucket: str | None = None, version_id: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        resp = self._call("get", key,
                          lambda: self.client.get_object(Bucket=bucket or self.bucket, Key=key, **extra))
        return resp["Body"].read()

    def get_json(self, key: str, version_id: str | None = None) -> Any:
        return json.loads(self.get_bytes(key, version_id=version_id))

    def get_pinned(self, key: str) -> tuple[bytes, ArtifactRef]:
        """The newest version of ``key`` and the ref that pins exactly those bytes (version id + their sha256):
        one read, so a version written after it is never mixed in."""
        from tasks.core.results import ArtifactRef

        resp = self._call("get", key, lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        data = resp["Body"].read()
        return data, ArtifactRef(self.uri(key), hashlib.sha256(data).hexdigest(), len(data), resp.get("VersionId"))

    def get_ref(self, ref: ArtifactRef) -> bytes:
        """The bytes of exactly ``ref`` (its version), checked against its sha256; a mismatch is fatal."""
        bucket, key = parse_s3_uri(ref.uri)
        data = self.get_bytes(key, bucket=bucket, version_id=ref.version_id)
        digest = hashlib.sha256(data).hexdigest()
        if digest != ref.sha256:
            raise IntegrityError(f"{ref.uri} (version {ref.version_id or 'unversioned'}) has sha256 {digest[:16]}…, "
                                 f"but it was pinned as {ref.sha256[:16]}…: the object was overwritten or corrupted")
        return data

    def versions(self, key: str) -> Iterator[str]:
        """Yield the version ids of exactly ``key``, newest first (S3 lists a key's versions in that order);
        an unversioned bucket yields its one version ("null"). Delete markers are not versions."""
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                yield from (v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key)
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; report one clear error
            raise StorageError(f"cannot list versions of s3://{self.bucket}/{key}: {_reason(exc)}") from exc

    def fetch_uri(self, uri: str, dest: str | Path) -> Path:
        bucket, key = parse_s3_uri(uri)
        return self.get_file(key, dest, bucket=bucket)

    def presigned_url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        """A link that opens the object in a browser without credentials (S3 caps it at 7 days)."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=expires_s)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot check s3://{self.bucket}/{key}: {exc}") from exc

    def find(self, key: str) -> Artifact | None:
        """The object's HEAD (sha256 from its metadata, size, version), or None when there is no such key."""
        from botocore.exceptions import ClientError

        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StorageError(f"cannot check s3://{self.bucket}/{key}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - endpoint down and friends: one clear error
            raise StorageError(f"cannot check s3://{self.bucket}/{key}: {_reason(exc)}") from exc
        return Artifact(key.rsplit("/", 1)[-1], key, resp.get("Metadata", {}).get("sha256", ""),
                        int(resp["ContentLength"]), resp.get("VersionId"))

    def head(self, key: str) -> Artifact:
        resp = self._call("head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        digest = resp.get("Metadata", {}).get("sha256", "")
        return Artifact(key.rsplit("/", 1)[-1], key, digest, int(resp["ContentLength"]))

    def fetch_verified(self, uri: str, dest: str | Path) -> LocalObject:
        """Download an object someone else wrote (a bring-your-own model), checked against what the store says.

        The bytes are read with ``If-Match`` on the ETag of a HEAD, then checked against its size, its MD5
        (a single-part ETag) and the sha256 metadata when ``put_file`` wrote it; any mismatch is fatal.
        """
        bucket, key = parse_s3_uri(uri)
        head = self._call("head", key, lambda: self.client.head_object(Bucket=bucket, Key=key), bucket=bucket)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        etag = head["ETag"].strip('"')
        sha256, md5, size = self._call("download", key, bucket=bucket, fn=lambda: _stream(
            self.client.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])["Body"], tmp))
        wrong = _mismatch(size, sha256, md5, int(head["ContentLength"]), etag,
                          head.get("Metadata", {}).get("sha256", ""))
        if wrong:
            tmp.unlink(missing_ok=True)
            raise IntegrityError(f"{uri}: {wrong}: the object changed or was corrupted in transit; upload it again")
        tmp.replace(dest)
        return LocalObject(key, dest, sha256, size)

    def fetch_prefix(self, uri: str, dest_dir: str | Path) -> list[LocalObject]:
        """Download every object under an ``s3://bucket/prefix/`` into ``dest_dir`` (same relative paths), each
        verified as by ``fetch_verified``; returns them in key order."""
        bucket, prefix = parse_s3_uri(uri)
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        out = []
        for obj in self.list(prefix, bucket=bucket):
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/"):  # directory markers
                continue
            reason = unsafe_key_reason(rel)
            if reason:
                raise IntegrityError(f"{uri}: refusing object key {obj['Key']!r}: it {reason}, so it would be "
                                     "written outside the directory")
            out.append(self.fetch_verified(f"s3://{bucket}/{obj['Key']}", Path(dest_dir) / rel))
        return out

    def list(self, prefix: str, bucket: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``{'Key', 'Size', 'LastModified'}`` for every object under prefix, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket or self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; report one clear error
            raise StorageError(f"cannot list s3://{bucket or self.bucket}/{prefix}: {_reason(exc)}") from exc

    def verify(self, artifact: dict[str, Any]) -> str | None:
        """Re-download one artifact; return None when sha256 and size match, else what is wrong."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.get_file(artifact["key"], Path(tmp) / "obj")
            except StorageError as exc:
                return str(exc)
            size, digest = path.stat().st_size, sha256_file(path)
        if size != artifact["size_bytes"]:
            return f"size {size} != {artifact['size_bytes']}"
        if digest != artifact["sha256"]:
            return f"sha256 {digest} != {artifact['sha256']}"
        return None

    def _call(self, action: str, key: str, fn: Any, bucket: str | None = None) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            raise StorageError(f"{action} s3://{bucket or self.bucket}/{key} failed: {_reason(exc)}") from exc


@dataclass(frozen=True)
class LocalObject:
    """An object downloaded and verified by ``fetch_verified``: its key, local path and the sha256 of its bytes."""

    key: str
    path: Path
    sha256: str
    size_bytes: int


def _stream(body: Any, path: Path) -> tuple[str, str, int]:
    """Write a response body to ``path``; return its sha256, MD5 and length."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "wb") as fh:
        for chunk in body.iter_chunks(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += fh.write(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def _mismatch(size: int, sha256: str, md5: str, want_size: int, etag: str, want_sha256: str) -> str:
    """What is wrong with downloaded bytes, or '' (a multipart ETag, 'md5-N', is not an MD5 and is not compared)."""
    if size != want_size:
        return f"{size} bytes read, the store lists {want_size}"
    if "-" not in etag and len(etag) == 32 and md5 != etag:
        return f"MD5 {md5} != ETag {etag}"
    if want_sha256 and sha256 != want_sha256:
        return f"sha256 {sha256[:16]}… != recorded {want_sha256[:16]}…"
    return ""


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Could not connect" in text or "Connect timeout" in text or "EndpointConnectionError" in type(exc).__name__:
        endpoint = os.environ.get(ENV_ENDPOINT, "the configured endpoint")
        return f"object store unreachable at {endpoint}: is MinIO running? ({text})"
    return text

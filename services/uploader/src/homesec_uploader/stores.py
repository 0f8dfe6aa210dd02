"""Destinations: an S3 bucket (boto3; AWS or any S3-compatible endpoint) or a local folder.

Both store objects under the same keys and answer ``head(key)`` with the size and the MD5 hex
digest (S3's ETag for a single-part upload without SSE-KMS), which is how the uploader proves an
object is already there and never uploads it twice. ``copy`` and ``delete`` move a relabelled
event's objects to the new label's keys.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from homesec.files import atomic_write
from homesec.media import resolve_inside
from homesec_uploader.settings import UploaderSettings

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


class DestinationError(Exception):
    """The destination refused or could not be reached; the upload is retried later."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Stored:
    size: int
    etag: str  # without quotes


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Store(Protocol):
    mode: str
    destination: str
    verifies_md5: bool

    def head(self, key: str) -> Stored | None: ...

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        """Store ``data`` under ``key``; returns what the destination confirmed."""
        ...

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        """Copy the object at ``source`` to ``key`` within the destination; returns the ETag."""
        ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a key that does not exist succeeds."""
        ...


class S3Store:
    """A bucket reached with boto3; credentials from settings or the standard AWS chain."""

    mode = "s3"

    def __init__(self, settings: UploaderSettings, client: Any | None = None) -> None:
        assert settings.bucket is not None
        self.bucket = settings.bucket
        self.destination = settings.destination
        self.sse = settings.server_side_encryption
        self.verifies_md5 = self.sse != "aws:kms"  # SSE-KMS ETags are not MD5 digests
        self._client = client if client is not None else make_client(settings)

    def head(self, key: str) -> Stored | None:
        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "AccessDenied"):
                return None  # no s3:ListBucket right: HEAD cannot tell; the PUT decides
            raise _error("HEAD", key, exc) from None
        except (BotoCoreError, OSError) as exc:
            raise _error("HEAD", key, exc) from None
        return Stored(int(resp["ContentLength"]), str(resp["ETag"]).strip('"'))

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        try:
            resp = self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ContentMD5=base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest())
                .decode()
                .strip(),
                Metadata=metadata,
                **self._sse(),
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _error("PUT", key, exc) from None
        return Stored(len(data), str(resp["ETag"]).strip('"'))

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        """A server-side CopyObject (needs s3:GetObject on the source, s3:PutObject on the key);
        the new object gets the given metadata, not the source's."""
        try:
            resp = self._client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": source},
                MetadataDirective="REPLACE",
                ContentType=content_type,
                Metadata=metadata,
                **self._sse(),
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _error("COPY", key, exc) from None
        return str(resp["CopyObjectResult"]["ETag"]).strip('"')

    def delete(self, key: str) -> None:
        """DeleteObject (needs s3:DeleteObject); in a versioned bucket this adds a delete
        marker and the old versions stay until a lifecycle rule expires them."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _error("DELETE", key, exc) from None

    def _sse(self) -> dict[str, Any]:
        return {} if self.sse == "none" else {"ServerSideEncryption": self.sse}


def make_client(settings: UploaderSettings) -> Any:
    """A boto3 S3 client: explicit keys when configured, else boto3's own credential chain."""
    kwargs: dict[str, Any] = {}
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        kwargs["aws_access_key_id"] = settings.aws_access_key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
        if settings.aws_session_token is not None:
            kwargs["aws_session_token"] = settings.aws_session_token.get_secret_value()
    config = Config(
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        s3={"addressing_style": settings.addressing_style},
        # Content-MD5 is sent with every PUT; the CRC32 headers newer botocore adds by default
        # are refused by several S3-compatible servers, so only when an API requires them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session(region_name=settings.region)
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config, **kwargs)


def _error(op: str, key: str, exc: Exception) -> DestinationError:
    if isinstance(exc, _UNREACHABLE):
        return DestinationError(f"S3 unreachable: {exc}", unreachable=True)
    if isinstance(exc, NoCredentialsError):
        return DestinationError("no AWS credentials found (settings, env, ~/.aws or secrets)")
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return DestinationError(
            f"S3 {op} {key}: {err.get('Code', '?')} {err.get('Message', '')}".strip()
        )
    return DestinationError(f"S3 {op} {key}: {type(exc).__name__}: {exc}")


class LocalStore:
    """A folder with the same key layout (the default when no bucket is configured)."""

    mode = "local"
    verifies_md5 = True

    def __init__(self, settings: UploaderSettings) -> None:
        self.root = settings.training_dir
        self.destination = settings.destination

    def _path(self, key: str) -> Path:
        return resolve_inside(self.root, key)

    def head(self, key: str) -> Stored | None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return Stored(len(data), md5_hex(data))

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(key), data)
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return Stored(len(data), md5_hex(data))

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        try:
            data = self._path(source).read_bytes()
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return self.put(key, data, content_type, metadata).etag

    def delete(self, key: str) -> None:
        """Remove the file, then its folders up to the root as far as they are empty."""
        try:
            path = self._path(key)
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        root = self.root.resolve()
        for folder in path.parents:
            if folder == root or root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): the folders above are not empty either


def make_store(settings: UploaderSettings) -> Store:
    return S3Store(settings) if settings.mode == "s3" else LocalStore(settings)

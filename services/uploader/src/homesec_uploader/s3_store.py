"""The S3 destination: a bucket reached with boto3 (AWS or any S3-compatible endpoint).

Imported only in S3 mode (``stores.make_store``), so a local-folder uploader never loads boto3.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

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

from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import DestinationError, Stored

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


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

    def listing(self, prefix: str) -> Iterator[tuple[str, Stored]]:
        """Every object under ``prefix`` (ListObjectsV2, needs s3:ListBucket), in key order."""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"]), Stored(int(item["Size"]), str(item["ETag"]).strip('"'))
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _error("LIST", prefix, exc) from None

    def get(self, key: str) -> bytes:
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=key)
            return bytes(resp["Body"].read())
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _error("GET", key, exc) from None

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

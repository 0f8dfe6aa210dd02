"""Fixtures of the uploader tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from uploader_support import BUCKET, S3Server, s3_with_bucket


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto's S3 server with an empty versioned ``BUCKET``; AWS settings of the environment
    replaced by test ones."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = s3_with_bucket(BUCKET)
    yield server
    server.stop()

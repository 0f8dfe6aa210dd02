"""Helpers of the fault tests: a small disk of their own."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(where: Path, size: str, what: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (unmounted on leaving); skips loudly, naming
    the fault test ``what`` that did not run, where mounting is not permitted."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip(f"{what} FAULT TEST NOT RUN: mounting a tmpfs needs root (euid != 0)")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if result.returncode != 0:
        pytest.skip(
            f"{what} FAULT TEST NOT RUN: `mount -t tmpfs` was refused "
            f"(container without CAP_SYS_ADMIN?): {result.stderr.strip()}"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=20)

"""Fault injection for the daemon tests: a small tmpfs (a real full disk, root only), a read-only mount, and
SQLite connections that fail the way SQLite does when the disk fills or turns read-only."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where`` (skips the test when this process cannot mount)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    with _mounted(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], where, "mount a tmpfs"):
        yield where


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """Make ``directory`` read-only for this process: a read-only bind mount as root (root ignores modes), a
    0555 mode otherwise."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(mode)
        return
    with _mounted(["--bind", "-o", "ro", str(directory)], directory, f"bind-mount {directory} read-only"):
        yield directory


@contextlib.contextmanager
def _mounted(args: list[str], where: Path, what: str) -> Iterator[None]:
    """``mount ARGS WHERE`` for the block, lazily unmounted after it (skips the test when the mount fails)."""
    done = subprocess.run(["mount", *args, str(where)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot {what} here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


class DiskFullConnection:
    """A sqlite3 connection whose INSERTs and UPDATEs fail the way SQLite fails on a full disk (``error``, default
    ``database or disk is full``) or a read-only one (``attempt to write a readonly database``): SQLite rolls the
    transaction back itself, so a later ROLLBACK finds no transaction. Set ``failing`` False to give space back."""

    def __init__(self, real: sqlite3.Connection, error: str = "database or disk is full") -> None:
        self._real = real
        self.error = error
        self.failing = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    @property
    def in_transaction(self) -> bool:
        return self._real.in_transaction

    def execute(self, sql: str, *args: Any) -> Any:
        return self.cursor().execute(sql, *args)

    def cursor(self) -> Any:
        return _DiskFullCursor(self._real.cursor(), self)


class _DiskFullCursor:
    def __init__(self, real: sqlite3.Cursor, conn: DiskFullConnection) -> None:
        self._real, self._conn = real, conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def execute(self, sql: str, *args: Any) -> Any:
        if self._conn.failing and sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            db = self._conn._real
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise sqlite3.OperationalError(self._conn.error)
        return self._real.execute(sql, *args)

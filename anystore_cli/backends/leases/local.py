"""Leases in a local folder: one file per token, created with `link()`.

A create is a `link()` of a complete file to `NAME/<token>`, which fails if it exists; a
take-over links `<token+1>`, so one contender wins; a renewal rewrites `<token>` and then
checks that no higher token appeared.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

from anystore_cli.errors import StoreError
from anystore_cli.store.lease import LOCK_FOLDER, Lease, LeaseBackend, check_name, storage_name


class LocalLeases(LeaseBackend):
    """Local folders: `NAME/<token>` files, created with `link()` so exactly one contender
    creates each token; the highest token is the lease."""

    def _folder(self, name: str) -> str:
        return os.path.join(self.store.root, LOCK_FOLDER, storage_name(check_name(name)))

    def _tokens(self, folder: str) -> list[int]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if len(n) == 20 and n.isascii() and n.isdigit())

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """The record of the highest token file."""
        folder = self._folder(name)
        for _ in range(20):
            tokens = self._tokens(folder)
            if not tokens:
                return None, None
            try:
                with open(os.path.join(folder, f"{tokens[-1]:020d}"), "rb") as handle:
                    return Lease.load(handle.read()), tokens[-1]
            except FileNotFoundError:  # cleaned up by a newer holder: read again
                continue
        raise StoreError(f"Lock `{name}` in store `{self.label}`: the lease folder keeps changing")

    def _write_temp(self, folder: str, lease: Lease) -> str:
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as handle:
            handle.write(lease.dump())
        return tmp

    def _newer_exists(self, folder: str, token: int) -> bool:
        tokens = self._tokens(folder)
        return bool(tokens) and tokens[-1] > token

    def _link(self, name: str, lease: Lease) -> Any:
        folder = self._folder(name)
        tmp = self._write_temp(folder, lease)
        try:
            os.link(tmp, os.path.join(folder, f"{lease.token:020d}"))
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        # a contender that read an old state may create a token that a newer holder already
        # cleaned up: it finds the newer one here and backs off
        if self._newer_exists(folder, lease.token):
            return None
        for token in self._tokens(folder):
            if token < lease.token:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, f"{token:020d}"))
        return lease.token

    def create(self, name: str, lease: Lease) -> Any:
        """Link token 1 (or whatever token `lease` has) into place."""
        return self._link(name, lease)

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """A new token: link it (one winner). The same token (renew, release): rewrite it, and
        fail if a newer token appeared meanwhile."""
        if lease.token != version:
            return self._link(name, lease)
        folder = self._folder(name)
        if self._newer_exists(folder, version):
            return None
        tmp = self._write_temp(folder, lease)
        os.replace(tmp, os.path.join(folder, f"{lease.token:020d}"))
        if self._newer_exists(folder, version):
            return None
        return version

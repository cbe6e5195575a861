"""Leases on S3: `PutObject` with `If-None-Match: *` to create, with `If-Match: <etag>` for the rest."""

from __future__ import annotations

from typing import Any

from anystore_cli.errors import DoesNotExist, StoreError
from anystore_cli.store.lease import LOCK_FOLDER, Lease, LeaseBackend, cannot_lock, check_name, storage_name


class S3Leases(LeaseBackend):
    """S3: one object `.~anystore-locks/NAME` written with conditional PutObject requests."""

    def __init__(self, store: Any) -> None:
        if not store._is_s3:  # the other fsspec filesystems have no conditional writes
            raise cannot_lock(store)
        super().__init__(store)
        self.fs = store._fs

    def _location(self, name: str) -> tuple[str, str]:
        return self.store._bucket_key(f"{LOCK_FOLDER}/{storage_name(check_name(name))}")

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            with self.store._errors():
                return self.fs.call_s3(method, **kwargs)
        except StoreError as exc:
            if _precondition_failed(exc):
                return None
            raise

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """GetObject: the record and its ETag."""
        from fsspec.asyn import sync

        bucket, key = self._location(name)
        fs = self.fs

        async def _get() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            async with response["Body"] as stream:
                return await stream.read(), response["ETag"]

        try:
            with self.store._errors():
                body, etag = sync(fs.loop, _get)
        except (DoesNotExist, FileNotFoundError):
            return None, None
        return Lease.load(body), etag

    def create(self, name: str, lease: Lease) -> Any:
        """PutObject with If-None-Match: *."""
        bucket, key = self._location(name)
        response = self._call("put_object", Bucket=bucket, Key=key, Body=lease.dump(), IfNoneMatch="*")
        return None if response is None else response["ETag"]

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """PutObject with If-Match: the etag read."""
        bucket, key = self._location(name)
        response = self._call("put_object", Bucket=bucket, Key=key, Body=lease.dump(), IfMatch=version)
        return None if response is None else response["ETag"]


def _precondition_failed(exc: BaseException) -> bool:
    """An S3 error that means the condition did not hold (412, or 409 for a concurrent write)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if "PreconditionFailed" in text or "ConditionalRequestConflict" in text or "412" in text:
            return True
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return True
        seen = seen.__cause__ or seen.__context__
    return False

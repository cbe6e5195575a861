"""Mirror one store to another, and compare two (the library's `mirror` and `check`): a thin
face over `anystore_cli.services.mirror` and `anystore_cli.services.check`."""

from __future__ import annotations

from typing import Any

from anystore_cli.services.check import CheckStatus as CheckStatus  # noqa: PLC0414 - part of the API
from anystore_cli.services.mirror import MirrorStatus as MirrorStatus  # noqa: PLC0414 - part of the API


def mirror(source: Any, target: Any, *args: Any, **kwargs: Any) -> MirrorStatus:
    """Copy every matching key from `source` to `target`: small values in batches, large ones streamed.

    As in the original library, a key the target already has is skipped unless `overwrite`.
    Pass `compare=True` to copy what differs instead (size and modification time, or digests
    with `checksum=True`), and `delete=True` to remove target keys the source lacks, as
    `anystore mirror` does.

    Example:
        ```python
        status = mirror(get_store("./data"), get_store("s3://bucket/data"), glob="**/*.json")
        print(status.mirrored, status.skipped, status.failed)
        ```

    Args:
        source: Store (or uri) to read from
        target: Store (or uri) to write to
        *args: glob (relative to `prefix`), prefix, exclude_prefix, overwrite (copy keys the
            target already has), in this order or as keywords
        **kwargs: Further options of `anystore_cli.services.mirror.mirror`: workers, dry_run,
            include, exclude, shard, checksum, delete, create (a missing bucket), compare, ...

    Returns:
        The counts of mirrored, skipped, deleted and failed keys
    """
    from anystore_cli.services.mirror import mirror as run_mirror

    if len(args) > 4:  # the engine's later parameters are keyword-only here, as they always were
        raise TypeError(f"mirror() takes at most 6 positional arguments ({len(args) + 2} given)")
    compare = kwargs.pop("compare", False) or kwargs.get("checksum") or kwargs.get("delete")
    overwrite = args[3] if len(args) > 3 else kwargs.get("overwrite", False)
    if not overwrite and not compare:
        kwargs.setdefault("ignore_existing", True)
    # library stores pass as they are: the copy engine works on the backends behind them
    return run_mirror(source, target, *args, **kwargs)


def check(source: Any, target: Any, *args: Any, **kwargs: Any) -> CheckStatus:
    """Compare two stores: the keys only in `source`, only in `target`, and those that differ.

    Args:
        source: Store (or uri)
        target: Store (or uri)
        *args: Filters, as `mirror` takes them (glob, prefix, exclude_prefix)
        **kwargs: include, exclude, shard, checksum

    Returns:
        The keys found missing, extra and differing
    """
    from anystore_cli.services.check import check as run_check

    return run_check(source, target, *args, **kwargs)

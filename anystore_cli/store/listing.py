"""The store's listings: thin adapters over the backend's one listing primitive, `_list`.

`iterate_key_batches` and `iterate_entry_batches` hand `_list`'s batches on (after the filters
no backend applies itself); `iterate_keys`, `iterate_entries` and `iterate_infos` take them
apart. `keys -l`, `dump`, `mirror` and `check` are built on these.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

from anystore_cli.store.contract import INFO_BATCH, BackendContract, batched
from anystore_cli.store.entry import BaseStats, KeyEntry, Stats, entry_from_stats, stats_from_entry
from anystore_cli.util.keys import has_extra_filters, make_key_filter, normalize_prefix

_kind = operator.itemgetter(5)
"""`KeyEntry.kind`, in C"""


class Criteria(NamedTuple):
    """What a listing keeps: the criteria of `iterate_keys`, in its parameters' order."""

    prefix: str | None = None
    exclude_prefix: str | None = None
    glob: str | None = None
    include: Iterable[str] | str | None = None
    exclude: Iterable[str] | str | None = None
    shard: str | tuple[int, int] | None = None
    filters: Iterable[str] | None = None


_CRITERIA = [
    inspect.Parameter(
        name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=getattr(annotation, "__forward_arg__", annotation),  # NamedTuple wraps the text
    )
    for name, annotation in Criteria.__annotations__.items()
]
"""The criteria as parameters, annotated as the source spells them"""

_Result = TypeVar("_Result")


def _takes_criteria(method: Callable[..., _Result]) -> Callable[..., _Result]:
    """A listing `method(self, criteria, *rest)` offered with the criteria as parameters of its
    own, before `rest`: one list of them for every listing, and `inspect.signature` and `help()`
    show them (and the method's docstring) as if written out."""
    own = inspect.signature(method)
    self_param, _, *rest = own.parameters.values()
    signature = own.replace(parameters=[self_param, *_CRITERIA, *rest])

    @functools.wraps(method)
    def listing(self: Any, *args: Any, **kwargs: Any) -> _Result:
        arguments = signature.bind(self, *args, **kwargs).arguments
        values = [arguments.pop(name, None) for name in Criteria._fields]
        arguments.pop("self", None)
        return method(self, Criteria._make(values), **arguments)

    del listing.__wrapped__  # the signature below is the one to show, not the method's
    listing.__signature__ = signature  # type: ignore[attr-defined]
    listing.__annotations__ = {
        **{param.name: param.annotation for param in signature.parameters.values() if param.name != "self"},
        "return": own.return_annotation,
    }
    return listing


class ListingMixin(BackendContract):
    """The public listings and metadata calls of a store (the host class supplies `_key`)."""

    _key: Callable[[Any], str]

    def _matching(self, criteria: Criteria, detail: bool = False, md5: bool = False) -> Iterator[list[Any]]:
        """`_list`'s batches for `criteria`, normalised, with the filters no backend applies
        itself (`include`, `exclude`, `shard`, `filters`) applied here; never an empty one."""
        prefix, exclude_prefix, glob, include, exclude, shard, filters = criteria
        extra = None
        if has_extra_filters(include, exclude, shard, filters):
            extra = make_key_filter(include=include, exclude=exclude, shard=shard, filters=filters)
        prefix, exclude_prefix = normalize_prefix(prefix), normalize_prefix(exclude_prefix)
        with self._errors(None):
            for batch in self._list(prefix or None, exclude_prefix or None, glob or None, detail=detail, md5=md5):
                if extra is not None:
                    batch = [item for item in batch if extra(item[0] if detail else item)]
                if batch:
                    yield batch

    @_takes_criteria
    def iterate_key_batches(self, criteria: Criteria) -> Generator[list[str], None, None]:
        """The keys of `iterate_keys`, in the same order, as lists (one folder or one page of the
        listing each, never empty): the fast way to move many keys along.

        Example:
            ```python
            for batch in store.iterate_key_batches(prefix="logs/"):
                sys.stdout.write("\\n".join(batch) + "\\n")
            ```

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            include: Globs of keys to keep, as `iterate_keys` takes them
            exclude: Globs of keys to leave out
            shard: Only the keys of shard `"I/N"`
            filters: Ordered rules `"+ GLOB"` / `"- GLOB"`

        Yields:
            Lists of matching keys
        """
        yield from self._matching(criteria)

    @_takes_criteria
    def iterate_keys(self, criteria: Criteria) -> Generator[str, None, None]:
        """Iterate through all the keys in the store based on given criteria.

        Criteria can be combined (e.g. include but exclude a subset). `prefix` is a literal
        string prefix, `glob` a path glob matched against the whole key (`*` within one
        segment, `**` across segments).

        Example:
            ```python
            for key in store.iterate_keys(prefix="dataset1/", glob="**/*.pdf"):
                data = store.get(key, serialization_mode="raw")
            ```

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            include: Globs of keys to keep, as rclone's `--include` (see `util.keys`)
            exclude: Globs of keys to leave out, as rclone's `--exclude`
            shard: Only the keys of shard `"I/N"` (or `(I, N)`): a stable hash of the key
                modulo N, so N callers with shards 0..N-1 see every key exactly once
            filters: Ordered rules `"+ GLOB"` / `"- GLOB"` (the first that matches decides),
                tried before `include` and `exclude`

        Returns:
            The matching keys as a generator of strings
        """
        for batch in self._matching(criteria):
            yield from batch

    @_takes_criteria
    def iterate_entry_batches(self, criteria: Criteria, md5: bool = False) -> Generator[list[KeyEntry], None, None]:
        """The entries of `iterate_entries` as lists (a folder or a page each, never empty).

        Names that hold no value (Redis hashes, lists, ...) are left out and counted by kind in
        `skipped_non_values`. The criteria are those of `iterate_keys`.

        Args:
            md5: Also give the MD5 where the store has it without reading the value through
                this process (`capabilities.md5`); None elsewhere

        Yields:
            Lists of `KeyEntry`
        """
        skipped: Counter[str] = self.__dict__.setdefault("skipped_non_values", Counter())
        skipped.clear()
        for batch in self._matching(criteria, detail=True, md5=md5):
            if any(map(_kind, batch)):
                skipped.update(entry.kind for entry in batch if entry.kind is not None)
                batch = [entry for entry in batch if entry.kind is None]
            if batch:
                yield batch

    @_takes_criteria
    def iterate_entries(self, criteria: Criteria, md5: bool = False) -> Generator[KeyEntry, None, None]:
        """Iterate through the matching keys with their size and modification time.

        One listing where the backend gives both (local folders, S3, SQL, zip, memory; Redis
        asks in pipelined batches); the criteria are those of `iterate_keys`.

        Args:
            md5: Also give the MD5 where the store has it without reading the value through
                this process (an S3 ETag of a single-part upload; computed by PostgreSQL or
                MySQL); None elsewhere

        Returns:
            `KeyEntry(key, size, mtime, md5, created)` tuples; None where the store does not know
        """
        yield from itertools.chain.from_iterable(self.iterate_entry_batches(*criteria, md5=md5))

    @_takes_criteria
    def iterate_infos(self, criteria: Criteria) -> Generator[Stats, None, None]:
        """Iterate through the metadata of the keys matching the criteria of `iterate_keys`
        (its parameters, which it describes).

        The listing's own metadata where the backend has it (S3, SQL, zip, local folders),
        else the keys' metadata asked for in batches: far fewer round trips than `info` per key.

        Example:
            ```python
            total = sum(stats.size for stats in store.iterate_infos(prefix="logs/"))
            ```

        Yields:
            The metadata (`Stats`) of each matching key, in listing order
        """
        batches = self._matching(criteria, detail=True)
        if type(self)._stats is not ListingMixin._stats:  # the backend adds to the metadata
            stats = self._stats
            for batch in batches:
                for entry in batch:
                    yield stats(entry.key, stats_from_entry(entry))
            return
        make, store = Stats.from_entry, str(self.uri)
        for batch in batches:
            for entry in batch:
                yield make(entry, store)

    def entry(self, key: Any) -> KeyEntry | None:
        """The `KeyEntry` of one key (size and modification time), or None if it does not exist."""
        key = self._key(key)
        with self._errors(key):
            return self._entry(key)

    def entry_many(self, keys: list[Any]) -> dict[str, KeyEntry | None]:
        """The `KeyEntry` of each of `keys` (None for a missing one), asked in batches: one query
        or round trip a batch where the backend can (`_info_many`). Never reads the values."""
        found: dict[str, KeyEntry | None] = {}
        for batch in batched((self._key(key) for key in keys), INFO_BATCH):
            with self._errors(batch[0] if len(batch) == 1 else None):
                for key, stats in self._info_many(batch):
                    found[key] = None if stats is None else entry_from_stats(key, stats)
        return found

    def info(self, key: Any) -> Stats:
        """Get metadata for the given `key` (never reads the value).

        Returns:
            Key metadata

        Raises:
            DoesNotExist: If the key does not exist
        """
        key = self._key(key)
        with self._errors(key):
            stats = self._info(key)
        return self._stats(key, stats)

    def _stats(self, key: str, stats: BaseStats) -> Stats:
        """The public metadata of `key` from the backend's `BaseStats`."""
        return Stats.build(key, str(self.uri), stats)

    def info_many(
        self, keys: Iterable[Any], batch_size: int = INFO_BATCH
    ) -> Generator[tuple[str, Stats | None], None, None]:
        """Get the metadata of many keys: the bulk path (one query or pipeline a batch where the
        backend can). Never reads the values.

        Args:
            keys: Keys relative to store base uri
            batch_size: Number of keys asked about at once

        Yields:
            `(key, Stats)` in the order of `keys`, `(key, None)` for a key that does not exist
        """
        checked = (self._key(key) for key in keys)
        while batch := list(itertools.islice(checked, batch_size)):
            with self._errors(batch[0] if len(batch) == 1 else None):
                found = list(self._info_many(batch))
            for key, stats in found:
                yield key, None if stats is None else self._stats(key, stats)


__all__ = ["Criteria", "ListingMixin"]

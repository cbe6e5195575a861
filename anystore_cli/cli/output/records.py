"""Records: the one place a key's metadata becomes the record `info`, `keys --json` and
`keys -l` print: `key name store uri size created_at updated_at` in the order of CLI.md,
passwords masked; a name that is not UTF-8 shown readably, its exact bytes in `key_b64` after
`key`; `type` last for a name that holds no value (a Redis hash)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any


class RecordMaker:
    """Builds the records of one store's keys: what is the same for every key is worked out once."""

    def __init__(self, store: Any, iso: bool = True) -> None:
        from anystore_cli.cli.output.text import uri_text
        from anystore_cli.util.keys import is_text_key
        from anystore_cli.util.uri import join_uri, mask_uri

        self.iso = iso
        """Times as ISO 8601 strings; False: as datetimes (orjson writes the same text, faster)"""

        self.mask = mask_uri
        label = mask_uri(str(store.uri))
        self.store_label = label if is_text_key(label) else uri_text(label)
        self.uri_head: str | None = ""
        if store.is_fslike:
            probe = join_uri(store.uri, "k")
            # keys are normalised (no `.`, `..` or empty segments): the uri is a plain join
            self.uri_head = probe[:-1] if probe.endswith("/k") else None
        self.join = functools.partial(join_uri, store.uri)
        self.is_text_key = is_text_key

    def __call__(self, stats: Any) -> dict[str, Any]:
        """The record of one key's `Stats`."""
        record = self.records([(stats.key, stats.size, stats.created_at, stats.updated_at)])[0]
        kind = getattr(stats, "value_type", None)
        if kind is not None:  # a name that holds no value (a Redis hash, list, ...)
            record["type"] = kind
        return record

    def records(self, rows: list[tuple[str, int | None, datetime | None, datetime | None]]) -> list[dict[str, Any]]:
        """The records of a batch of `(key, size, created, updated)`. What is the same for every
        key is worked out once a batch: the times become ISO text in one `orjson` call (the
        text of `isoformat()`), and keys are tested once for what needs masking or escaping."""
        head, store = self.uri_head, self.store_label
        uris = [self.join(row[0]) for row in rows] if head is None else [head + row[0] for row in rows]
        built = [
            {
                "key": key,
                "name": key.rpartition("/")[2],
                "store": store,
                "uri": uri,
                "size": size,
                "created_at": created,
                "updated_at": updated,
            }
            for (key, size, created, updated), uri in zip(rows, uris, strict=True)
        ]
        joined = "".join(uris)
        if "@" in joined or "=" in joined or not self.is_text_key(joined):
            built = [self._escaped(record) for record in built]
        if self.iso and built:
            self._iso_times(built)
        return built

    def _escaped(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record with a password or secret in its uri masked, and a name that is not UTF-8
        shown readably, its exact bytes in `key_b64`."""
        uri = record["uri"]
        if "@" in uri or "=" in uri:
            record["uri"] = uri = self.mask(uri)
        if not self.is_text_key(uri):
            from anystore_cli.cli.output.text import uri_text

            record["uri"] = uri_text(uri)
        key = record["key"]
        if self.is_text_key(key):
            return record
        from anystore_cli.cli.output.text import readable_text
        from anystore_cli.util.keys import key_b64

        return {
            "key": readable_text(key),
            "key_b64": key_b64(key),
            **{name: value for name, value in record.items() if name != "key"},
            "name": readable_text(record["name"]),
        }

    @staticmethod
    def _iso_times(records: list[dict[str, Any]]) -> None:
        times = [time for record in records for time in (record["created_at"], record["updated_at"])]
        if None in times:
            texts = iter([None if time is None else time.isoformat() for time in times])
        else:
            import orjson

            # a list of JSON strings, split where one ends and the next begins: `","` is only
            # ever that, a quote inside a JSON string is escaped
            texts = iter(orjson.dumps(times).decode()[2:-2].split('","'))
        for record in records:
            record["created_at"] = next(texts)
            record["updated_at"] = next(texts)


def info_record(store: Any, stats: Any) -> dict[str, Any]:
    """The record of one key's `Stats` in `store` (as `keys --json` prints it)."""
    return RecordMaker(store)(stats)


def json_line(record: Any) -> bytes:
    """One compact JSON document and a newline."""
    import orjson

    return orjson.dumps(record) + b"\n"


def json_lines(records: list[dict[str, Any]]) -> bytes:
    """JSON lines of a batch of records, in one `orjson` call: the array's `},{"key":` is only
    ever a boundary between two records (a quote inside a JSON string is escaped), and `key`
    opens every record."""
    import orjson

    if not records:
        return b""
    return orjson.dumps(records)[1:-1].replace(b'},{"key":', b'}\n{"key":') + b"\n"


def long_line(record: dict[str, Any]) -> str:
    """`SIZE TAB UPDATED TAB KEY`, the line of `keys -l` when piped (the type of a name that
    holds no value in place of its size)."""
    return f"{long_size(record)}\t{record['updated_at'] or ''}\t{record['key']}"


def long_size(record: dict[str, Any]) -> Any:
    """The size column of `keys -l`: the size, or the type of a name that holds no value."""
    return record["size"] if record["size"] is not None else record.get("type", "")

"""Write JSON lines (as `anystore dump` writes them) through a loop of the original library's `store.put`.

Runs inside the original anystore 0.3.0 virtual environment (bench/.venv-original), started by
bench/bulk.py. Prints one JSON line: {"keys": N, "seconds": S}.

Usage: python original_put_loop.py STORE_URI JSONL_FILE [--table NAME] [--redis-prefix P] [--limit N] [--max-seconds S]

`--limit` stops after N keys, `--max-seconds` after S seconds (checked every 100 keys): the
caller compares rates (keys/s), so a loop that is slow on a busy machine need not run to the end.
"""

import argparse
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    parser.add_argument("jsonl")
    parser.add_argument("--table")
    parser.add_argument("--redis-prefix")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=0)
    args = parser.parse_args()

    kwargs = {"serialization_mode": "raw"}
    if args.table:
        # the original SQL backend reads its table name from module-level settings
        from anystore.store import sql

        sql.sql_settings["table"] = args.table
    if args.redis_prefix:
        kwargs["backend_config"] = {"redis_prefix": args.redis_prefix}

    from anystore import get_store

    store = get_store(args.uri, **kwargs)
    count = 0
    started = time.perf_counter()
    with open(args.jsonl, "rb") as lines:
        for line in lines:
            record = json.loads(line)
            store.put(record["key"], record["value"].encode())
            count += 1
            if args.limit and count >= args.limit:
                break
            if args.max_seconds and count % 100 == 0 and time.perf_counter() - started > args.max_seconds:
                break
    seconds = time.perf_counter() - started
    sys.stdout.write(json.dumps({"keys": count, "seconds": seconds}) + "\n")


if __name__ == "__main__":
    main()

"""Sync: a second `mirror` of unchanged keys against listing both sides; copies and compares
between two server stores (sqlite → Redis) against `dump | load`."""

from __future__ import annotations

import itertools
import secrets
import shlex
from collections.abc import Callable

from bench.runner import (
    AWS_ENV,
    REDIS_URI,
    S3_BUCKET,
    SYNC_KEYS,
    BenchError,
    Context,
    Run,
    _tail,
    fmt_rss,
    fmt_s,
    interleaved,
    make_bulk_files,
    measure,
    median_seconds,
    moto_server,
    redis_delete,
    sh,
)

SERVER_COPY_KEYS = 20_000
"""Keys of the sqlite → Redis rows (`mirror`, `mirror -j 8`, `check --checksum`)"""


def section_sync(ctx: Context) -> None:
    """A second `mirror` of unchanged keys between a local folder and S3, against listing both
    sides; then `mirror` and `check --checksum` from sqlite to Redis against `dump | load`."""
    _unchanged_keys(ctx)
    _server_copies(ctx)


def _server_copies(ctx: Context) -> None:
    """`mirror` sqlite → Redis (with 1 and 8 workers) and `check --checksum` of the copy, each
    against `dump | load` of the same keys, interleaved, every copy into a fresh Redis prefix."""
    cfg, report, env, work = ctx.cfg, ctx.report, ctx.env, ctx.workdir
    n, rid = SERVER_COPY_KEYS, secrets.token_hex(3)
    jsonl, source = work / "copies.jsonl", f"sqlite:///{work / 'copies.db'}"
    make_bulk_files(jsonl, work / "copies.resp", n, "unused")
    print(f"  building {n:,} keys in sqlite ...", flush=True)
    sh([*ctx.new, "-s", source, "-b", "table=copies", "load", "-i", str(jsonl)], env=env)
    counter = itertools.count()
    prefixes: list[str] = []

    def fresh() -> str:
        prefixes.append(f"bench-{rid}-copy-{next(counter)}")
        return f"{REDIS_URI}/{prefixes[-1]}"

    new = shlex.join(ctx.new)
    checked = fresh()
    sqlite = ["-i", source, "--input-config", "table=copies"]
    try:
        sh([*ctx.new, "mirror", *sqlite, "-o", checked], env=env)

        def into_fresh(build: Callable[[str], list[str]], exact_rss: bool = True) -> Callable[[], Run]:
            """A timed copy into a fresh prefix, deleted after the run (untimed): every run, and
            the `check` beside them, meets a database of the same size (a SCAN walks all of it)."""

            def run() -> Run:
                target = fresh()
                try:
                    return measure(build(target), env=env, exact_rss=exact_rss)
                finally:
                    redis_delete(f"{prefixes.pop()}*")

            return run

        pipe = f"{new} -s {shlex.quote(source)} -b table=copies dump | {new} -s {{}} load"
        commands = {
            "dump | load": into_fresh(lambda target: ["sh", "-c", pipe.format(target)], exact_rss=False),
            "mirror": into_fresh(lambda target: [*ctx.new, "mirror", *sqlite, "-o", target]),
            "mirror -j 8": into_fresh(lambda target: [*ctx.new, "mirror", *sqlite, "-o", target, "-j", "8"]),
            "check": lambda: measure([*ctx.new, "check", *sqlite, "-o", checked, "--checksum"], env=env),
        }
        results = interleaved(commands, cfg.listing_runs, warmup=0)
    finally:
        for prefix in prefixes:
            redis_delete(f"{prefix}*")
    anchor = median_seconds(results["dump | load"])
    one, eight = median_seconds(results["mirror"]), median_seconds(results["mirror -j 8"])
    check = median_seconds(results["check"])
    rss = f"peak RSS {fmt_rss(max(run.maxrss for run in results['mirror']))}"
    rows = (
        ("`mirror` sqlite → Redis", one, anchor, "`dump | load`", 1.5, rss),
        ("`mirror -j 8` sqlite → Redis", eight, one, "`mirror -j 1`", 1.0, ""),
        ("`check --checksum` sqlite vs Redis", check, anchor, "`dump | load`", 2.0, ""),
    )
    for label, ours, reference, what, limit, note in rows:
        report.target(
            f"Copies: {label}, {n:,} keys",
            fmt_s(ours),
            f"{fmt_s(reference)} ({what})",
            f"{ours / reference:.2f}×",
            f"≤ {limit}× {what}",
            ours / reference <= limit,
            note,
        )
    report.notes.append(
        f"Copies: {n:,} keys of about 70 bytes loaded into a sqlite table; `mirror` (default 1 worker, "
        f"and `-j 8`) into a fresh Redis prefix each run, `check --checksum` against one mirrored copy, "
        f"and `dump | load` of the same keys into a fresh prefix: medians of {cfg.listing_runs} "
        "interleaved runs. Each fresh prefix is deleted after its run (untimed), so every run meets a "
        "database of the same size: SCAN, which `check` lists the target with, walks the whole database."
    )


def _unchanged_keys(ctx: Context) -> None:
    """A second `mirror` of unchanged keys between a local folder and S3, against listing both sides."""
    cfg, report, env, work = ctx.cfg, ctx.report, ctx.env, ctx.workdir
    n = SYNC_KEYS
    local, back = work / "sync-local", work / "sync-back"
    jsonl = work / "sync.jsonl"
    make_bulk_files(jsonl, work / "sync.resp", n, "unused")
    print(f"  building {n:,} keys in a local folder ...", flush=True)
    sh([*ctx.new, "-s", str(local), "load", "-i", str(jsonl)], env=env)
    with moto_server(work) as endpoint:
        s3_env = {**env, **AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
        remote = f"s3://{S3_BUCKET}/sync"
        print(f"  first mirror of {n:,} keys to S3 and back ...", flush=True)
        measure([*ctx.new, "mirror", "-i", str(local), "-o", remote, "-j", "16"], env=s3_env)
        measure([*ctx.new, "mirror", "-i", remote, "-o", str(back), "-j", "16"], env=s3_env)
        for source, target, label in ((str(local), remote, "local → S3"), (remote, str(back), "S3 → local")):
            mirror_cmd = [*ctx.new, "mirror", "-i", source, "-o", target]
            check = measure(mirror_cmd, stdout=None, env=s3_env)
            if f"0 copied, {n} skipped" not in check.stderr.decode():
                report.fail(f"sync {label}", BenchError(f"second mirror copied keys: {_tail(check.stderr)}"))
                continue
            commands = {
                "mirror": lambda cmd=mirror_cmd: measure(cmd, env=s3_env, exact_rss=False),
                "list source": lambda uri=source: measure([*ctx.new, "-s", uri, "keys"], env=s3_env, exact_rss=False),
                "list target": lambda uri=target: measure([*ctx.new, "-s", uri, "keys"], env=s3_env, exact_rss=False),
            }
            results = interleaved(commands, cfg.listing_runs, warmup=0)
            ours = median_seconds(results["mirror"])
            listing = median_seconds(results["list source"]) + median_seconds(results["list target"])
            report.target(
                f"Sync: second `mirror` of {n:,} unchanged keys, {label}",
                fmt_s(ours),
                f"{fmt_s(listing)} (`keys` on both sides)",
                f"{ours / listing:.2f}×",
                "≤ 2× listing both sides",
                ours / listing <= 2.0,
                f"peak RSS {fmt_rss(check.maxrss)}",
            )
    report.notes.append(
        f"Sync: {n:,} keys of about 80 bytes in folders of 1,000, mirrored once to a moto S3 server and back; "
        f"then the median of {cfg.listing_runs} interleaved runs of the second `mirror` (every key skipped by "
        "size and time) against the sum of the medians of `keys` on each side."
    )

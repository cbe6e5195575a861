"""Infos: `keys -l` and `keys --json` against plain `keys`, on every backend the run can reach."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Callable, Iterator

from bench.runner import (
    AWS_ENV,
    PG_URI,
    REDIS_URI,
    S3_BUCKET,
    BenchError,
    Context,
    Run,
    _show,
    bulk_key,
    bulk_value,
    dump_line,
    fmt_rss,
    fmt_s,
    interleaved,
    measure,
    median_seconds,
    moto_server,
    psql,
    redis_delete,
    sh,
)

MYSQL_URI = "mysql+pymysql://root@127.0.0.1:3306/test"
TARGET = "≤ 3× `keys`"


def _mysql(sql: str) -> str:
    return sh(["mysql", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "test", "-e", sql])


def section_infos(ctx: Context) -> None:
    """`keys -l` and `keys --json` against plain `keys` on each backend: the metadata comes
    with the listing (one bulk listing, not a lookup per key)."""
    cfg, env = ctx.cfg, ctx.env
    n = 20_000 if cfg.quick else 50_000
    work = ctx.workdir
    lines = work / "infos.jsonl"
    with open(lines, "w") as handle:
        for i in range(n):
            handle.write(dump_line(bulk_key(i), bulk_value(i)))
    # local folder and zip are built natively (a zip's `load` rewrites its index per batch)
    folder = work / "infos-local"
    for i in range(n):
        path = folder / bulk_key(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(bulk_value(i))
    archive = work / "infos.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for i in range(n):
            handle.writestr(bulk_key(i), bulk_value(i))
    table = f"bench_infos_{ctx.run_id}".replace("-", "_")
    prefix = f"bench-{ctx.run_id}-infos"
    ctx.cleanups.append(lambda: psql(f'DROP TABLE IF EXISTS "{table}"'))
    ctx.cleanups.append(lambda: _mysql(f"DROP TABLE IF EXISTS `{table}`"))
    ctx.cleanups.append(lambda: redis_delete(f"{prefix}*"))
    stores: dict[str, tuple[list[str], dict[str, str], bool]] = {
        "local folder": ([str(folder)], env, False),
        "sqlite": ([f"sqlite:///{work / 'infos.db'}"], env, True),
        "PostgreSQL": ([PG_URI, "-b", f"table={table}"], env, True),
        "MariaDB": ([MYSQL_URI, "-b", f"table={table}"], env, True),
        "Redis": ([REDIS_URI, "-b", f"redis_prefix={prefix}"], env, True),
        "zip": ([str(archive)], env, False),
    }
    for name, (store, store_env, load) in stores.items():
        _measure_store(ctx, name, store, store_env, lines if load else None, n)
    with _s3(ctx) as s3:
        if s3 is not None:
            store, s3_env = s3
            _measure_store(ctx, "S3 (moto)", store, s3_env, lines, n)
    ctx.report.notes.append(
        f"Listing with metadata: median of {cfg.listing_runs} interleaved runs of `keys`, `keys -l` and "
        f"`keys --json` on each store of {n:,} keys (stdout to /dev/null, line counts checked first): a local "
        "folder and a zip built natively, sqlite, PostgreSQL and MariaDB tables, a Redis prefix and an S3 prefix "
        "on moto filled by `anystore load`; tables, prefixes and the bucket are dropped after. Sizes and times "
        "come from the listing itself (one SELECT, one ListObjectsV2 a page, the zip's index, the folder's "
        "entries) or, on Redis, from one script call per 1,000 keys, never from a lookup per key."
    )


@contextlib.contextmanager
def _s3(ctx: Context) -> Iterator[tuple[list[str], dict[str, str]] | None]:
    try:
        server = moto_server(ctx.workdir)
        endpoint = server.__enter__()
    except BenchError as exc:
        ctx.report.fail("S3 store for `keys --json`", exc)
        yield None
        return
    try:
        yield [f"s3://{S3_BUCKET}/infos", "-b", f"endpoint_url={endpoint}"], {**ctx.env, **AWS_ENV}
    finally:
        server.__exit__(None, None, None)


def _measure_store(ctx: Context, name: str, store: list[str], env: dict[str, str], load: object, n: int) -> None:
    cfg, report, work = ctx.cfg, ctx.report, ctx.workdir
    base = [*ctx.new, "--store", *store]
    try:
        if load is not None:
            print(f"  loading {n:,} keys into {name} ...", flush=True)
            measure([*base, "load", "-i", str(load)], env=env)
    except BenchError as exc:
        report.fail(f"`load` into {name} for `keys --json`", exc)
        for option in ("-l", "--json"):
            measure_name = f"Listing: `keys {option}` over {n:,} keys, {name}"
            report.unmeasured(measure_name, TARGET, "the store could not be filled")
        return
    commands = {"keys": [*base, "keys"], "-l": [*base, "keys", "-l"], "--json": [*base, "keys", "--json"]}
    usable: dict[str, Callable[[], Run]] = {}
    rss: dict[str, int] = {}
    for option, cmd in commands.items():
        try:
            out = work / "infos.out"
            rss[option] = measure(cmd, stdout=out, env=env).maxrss
            with open(out, "rb") as handle:
                count = sum(1 for _ in handle)
            out.unlink()
            if count != n:
                raise BenchError(f"`{_show(cmd)}` printed {count:,} lines, expected {n:,}")
        except BenchError as exc:
            report.fail(f"`keys {option}` on {name}", exc)
            continue
        usable[option] = lambda cmd=cmd: measure(cmd, env=env, exact_rss=False)
    print(f"  listing {name} with metadata x {cfg.listing_runs} ...", flush=True)
    results = interleaved(usable, cfg.listing_runs)
    for option in ("-l", "--json"):
        measure_name = f"Listing: `keys {option}` over {n:,} keys, {name}"
        if option not in results or "keys" not in results:
            report.unmeasured(measure_name, TARGET, "a command failed, see below")
            continue
        ours, plain = median_seconds(results[option]), median_seconds(results["keys"])
        report.target(
            measure_name,
            fmt_s(ours),
            f"{fmt_s(plain)} (`keys`)",
            f"{ours / plain:.2f}×",
            TARGET,
            ours / plain <= 3.0,
            f"peak RSS {fmt_rss(rss[option])}",
        )

"""Bulk: `anystore load` of many small keys against the original's loop and native tools."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.runner import (
    BULK_BUDGET_SECONDS,
    ORIGINAL_MAX_SECONDS,
    ORIGINAL_MAX_SECONDS_QUICK,
    PG_DB,
    PG_HOST,
    PG_PORT,
    PG_URI,
    PG_URI_ORIGINAL,
    PG_USER,
    PUT_LOOP,
    REDIS_URI,
    SQL_ORIGINAL_LIMIT,
    SQL_ORIGINAL_LIMIT_QUICK,
    BenchError,
    Config,
    Context,
    Run,
    _show,
    bulk_key,
    bulk_value,
    count_files,
    fmt_rate,
    fmt_rss,
    fmt_s,
    interleaved,
    make_bulk_files,
    measure,
    median_seconds,
    peak_rss,
    psql,
    redis_delete,
    to_trash,
)


@dataclass
class BulkTarget:
    name: str
    factor: float
    target: str
    new_args: Callable[[int], list[str]]
    """Store options for run `i` of anystore-cli (a fresh table, prefix or folder each run)"""
    original_args: list[str]
    count_new: Callable[[int], int]
    cleanup_new: Callable[[int], object]
    cleanup_original: Callable[[], object]
    kept_name: Callable[[int], str] = str
    """The prefix or folder of run `i` (kept for the listing section)"""


def _bulk_new_run(ctx: Context, target: BulkTarget, i: int, jsonl: Path, n: int) -> Run:
    """One `anystore load` into a fresh table / prefix / folder; the store is checked, then removed."""
    target.cleanup_new(i)
    cmd = [*ctx.new, *target.new_args(i), "load", "-i", str(jsonl)]
    run = measure(cmd, env=ctx.env)
    stored = target.count_new(i)
    if stored != n:
        raise BenchError(f"`{_show(cmd)}` stored {stored:,} keys, expected {n:,}")
    # the last local folder and Redis prefix stay for the listing section
    if i == ctx.cfg.bulk_runs - 1 and target.name == "Redis":
        ctx.kept_redis_prefix = target.kept_name(i)
    elif i == ctx.cfg.bulk_runs - 1 and target.name == "local folder":
        ctx.kept_local = Path(target.kept_name(i))
    else:
        target.cleanup_new(i)
    return run


def original_limit(cfg: Config, store: str) -> int:
    """How many keys the original's loop writes into `store` (0: all)."""
    if cfg.original_bulk_limit is not None:
        limit = cfg.original_bulk_limit
    elif store in ("sqlite", "PostgreSQL"):
        limit = SQL_ORIGINAL_LIMIT_QUICK if cfg.quick else SQL_ORIGINAL_LIMIT
    else:
        limit = 0
    return 0 if not limit or limit >= cfg.bulk_keys else limit


def _bulk_original_run(ctx: Context, target: BulkTarget, jsonl: Path) -> dict[str, float] | None:
    """The original's `store.put` loop over the same lines; None (and a failure noted) if it fails."""
    try:
        target.cleanup_original()
        cmd = [ctx.original_python, str(PUT_LOOP), *target.original_args, str(jsonl)]
        limit = original_limit(ctx.cfg, target.name)
        if limit:
            cmd += ["--limit", str(limit)]
        cmd += ["--max-seconds", str(ORIGINAL_MAX_SECONDS_QUICK if ctx.cfg.quick else ORIGINAL_MAX_SECONDS)]
        print(f"  original put loop into {target.name} ...", flush=True)
        run = measure(cmd, stdout=None, env=ctx.env)
        original = json.loads(run.stdout.decode().strip().splitlines()[-1])
        original["wall"] = run.seconds
        return original
    except (BenchError, ValueError, subprocess.TimeoutExpired) as exc:
        ctx.report.fail(f"put loop into {target.name} (original)", exc)
        return None
    finally:
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            target.cleanup_original()


def section_bulk(ctx: Context) -> None:
    """`anystore load` of many small keys against the original's `store.put` loop."""
    cfg, report, env, rid = ctx.cfg, ctx.report, ctx.env, ctx.run_id
    n = cfg.bulk_keys
    jsonl, resp = ctx.workdir / "bulk.jsonl", ctx.workdir / "bulk.resp"
    pipe_prefix = f"bench-{rid}-pipe"
    print(f"  writing {n:,} keys as JSON lines and as Redis protocol ...", flush=True)
    make_bulk_files(jsonl, resp, n, pipe_prefix)
    work = ctx.workdir

    def new_table(i: int) -> str:
        return f"bench_{rid}_new_{i}"

    def new_prefix(i: int) -> str:
        return f"bench-{rid}-new-{i}"

    def sqlite_count(path: Path, table: str) -> int:
        import sqlite3

        with contextlib.closing(sqlite3.connect(path)) as con:
            return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]

    def redis_count(prefix: str) -> int:
        run = measure(["redis-cli", "--scan", "--pattern", f"{prefix}/*"], stdout=work / "scan.out", env=env)
        del run
        with open(work / "scan.out", "rb") as handle:
            return sum(1 for _ in handle)

    orig_table = f"bench_{rid}_original"
    orig_prefix = f"bench-{rid}-original"
    targets = [
        BulkTarget(
            "sqlite",
            20,
            "≥ 20× original",
            lambda i: ["--store", f"sqlite:///{work}/new-{i}.db", "-b", "table=bench"],
            [f"sqlite:///{work}/original.db"],
            lambda i: sqlite_count(work / f"new-{i}.db", "bench"),
            lambda i: (work / f"new-{i}.db").unlink(missing_ok=True),
            lambda: (work / "original.db").unlink(missing_ok=True),
        ),
        BulkTarget(
            "PostgreSQL",
            20,
            "≥ 20× original",
            lambda i: ["--store", PG_URI, "-b", f"table={new_table(i)}"],
            [PG_URI_ORIGINAL, "--table", orig_table],
            lambda i: int(psql(f'SELECT count(*) FROM "{new_table(i)}"').strip()),
            lambda i: psql(f'DROP TABLE IF EXISTS "{new_table(i)}"'),
            lambda: psql(f'DROP TABLE IF EXISTS "{orig_table}"'),
        ),
        BulkTarget(
            "Redis",
            10,
            "≥ 10× original",
            lambda i: ["--store", REDIS_URI, "-b", f"redis_prefix={new_prefix(i)}"],
            [REDIS_URI, "--redis-prefix", orig_prefix],
            lambda i: redis_count(new_prefix(i)),
            lambda i: redis_delete(f"{new_prefix(i)}*"),
            lambda: redis_delete(f"{orig_prefix}*"),
            new_prefix,
        ),
        BulkTarget(
            "local folder",
            1,
            "≥ 1× original (no slower)",
            lambda i: ["--store", str(work / f"load-new-{i}")],
            [str(work / "load-original")],
            lambda i: count_files(work / f"load-new-{i}"),
            lambda i: to_trash(work, work / f"load-new-{i}"),
            lambda: to_trash(work, work / "load-original"),
            lambda i: str(work / f"load-new-{i}"),
        ),
    ]
    # whatever happens, nothing stays behind on the servers
    for target in targets:
        for i in range(cfg.bulk_runs):
            ctx.cleanups.append(lambda t=target, i=i: t.cleanup_new(i))
        ctx.cleanups.append(target.cleanup_original)
    ctx.cleanups.append(lambda: redis_delete(f"{pipe_prefix}*"))

    for target in targets:
        measure_name = f"Bulk: `load` of {n:,} keys, {target.name}"
        runs: list[Run] = []
        original = None
        failed = False
        # the original's loop runs after our first run and before the others, so that both see
        # the same machine (a shared disk's speed drifts from minute to minute)
        for i in range(cfg.bulk_runs):
            if i and sum(r.seconds for r in runs) > BULK_BUDGET_SECONDS and i != cfg.bulk_runs - 1:
                continue  # slow store, busy machine: fewer runs (the last one still runs: listing needs it)
            if not failed:
                print(f"  load into {target.name} ({i + 1}/{cfg.bulk_runs}) ...", flush=True)
                try:
                    runs.append(_bulk_new_run(ctx, target, i, jsonl, n))
                except (BenchError, subprocess.TimeoutExpired) as exc:
                    report.fail(f"`load` into {target.name} (anystore-cli)", exc)
                    runs, failed = [], True
            if i == 0:
                original = _bulk_original_run(ctx, target, jsonl)
        if not runs:
            report.unmeasured(measure_name, target.target, "`load` failed, see below")
            continue
        ours = median_seconds(runs)
        ctx.bulk_rates[target.name] = n / ours
        if original is None:
            report.unmeasured(measure_name, target.target, "the original's loop failed, see below")
            report.add(f"{measure_name} (anystore-cli)", fmt_s(ours), fmt_rate(n, ours))
            continue
        orig_rate = original["keys"] / original["seconds"]
        speedup = (n / ours) / orig_rate
        report.target(
            measure_name,
            f"{fmt_s(ours)}, {fmt_rate(n, ours)}",
            f"{fmt_rate(original['keys'], original['seconds'])} (original `put` loop, {original['keys']:,.0f} keys)",
            f"{speedup:.1f}×",
            target.target,
            speedup >= target.factor,
            f"median of {len(runs)}, peak RSS {fmt_rss(peak_rss(runs))}",
        )

    print("  redis-cli --pipe ...", flush=True)
    try:
        redis_delete(f"{pipe_prefix}*")
        pipe = interleaved({"pipe": lambda: measure(["redis-cli", "--pipe"], stdin=resp, env=env)}, 1, warmup=0)
        seconds = median_seconds(pipe["pipe"])
        stored = redis_count(pipe_prefix)
        if stored != n:
            raise BenchError(f"`redis-cli --pipe` stored {stored:,} keys, expected {n:,}")
        report.add(
            f"Bulk: `redis-cli --pipe` of the same {n:,} keys",
            f"{fmt_s(seconds)}, {fmt_rate(n, seconds)}",
            "plain SETs, no timestamps (anystore-cli also keeps a timestamp hash per key)"
            + (
                f"; anystore-cli `load` reaches {ctx.bulk_rates['Redis'] / (n / seconds):.2f} of this"
                if "Redis" in ctx.bulk_rates
                else ""
            ),
        )
    except (BenchError, subprocess.TimeoutExpired) as exc:
        report.fail("`redis-cli --pipe`", exc)
    finally:
        with contextlib.suppress(BenchError):
            redis_delete(f"{pipe_prefix}*")
    _psql_copy(ctx, n)
    limits = {t.name: original_limit(cfg, t.name) for t in targets}
    limited = ", ".join(f"the first {limit:,} on {name}" for name, limit in limits.items() if limit)
    limit_note = (
        f"the same keys; to keep the run short it writes only {limited}, and rates are compared"
        if limited
        else "the same keys"
    )
    max_seconds = ORIGINAL_MAX_SECONDS_QUICK if cfg.quick else ORIGINAL_MAX_SECONDS
    limit_note += f"; it also stops after {max_seconds} s, and the table shows how many keys it wrote"
    report.notes.append(
        f"Bulk: `anystore --store URI load -i FILE` of {n:,} JSON lines as `dump` writes them "
        f'(`{{"key": "bench/NNN/NNNNNN.txt", "value": "...{len(bulk_value(0))} characters..."}}`), median of '
        f"up to {cfg.bulk_runs} runs (fewer when they take over {BULK_BUDGET_SECONDS} s) into a fresh table / "
        "prefix / folder each, start-up included; the number of "
        "keys stored is checked with native tools. The reference is bench/original_put_loop.py in the "
        f"original's venv, a loop of `store.put(key, value)` ({limit_note}), timed inside the loop only "
        "(its start-up is not counted: that favours the original). sqlite and PostgreSQL use a fresh table "
        "(`-b table=...`), Redis a fresh `redis_prefix`."
    )


def _psql_copy(ctx: Context, n: int) -> None:
    """`psql -c "\\copy ..."` of the same rows into a table like the store's: the horizon of `load`
    into PostgreSQL (which COPYs each batch into a staging table, then upserts from it)."""
    cfg, report, env, rid = ctx.cfg, ctx.report, ctx.env, ctx.run_id
    table = f"bench_{rid}_copy"
    rows = ctx.workdir / "bulk.pgcopy"
    now = "2026-01-01 00:00:00"
    with open(rows, "w") as handle:
        for i in range(n):
            handle.write(f"{bulk_key(i)}\t\\\\x{bulk_value(i).encode().hex()}\t{now}\t{now}\t\\N\n")
    create = (
        f'CREATE TABLE "{table}" (key VARCHAR COLLATE "C" PRIMARY KEY, value BYTEA NOT NULL, '
        "created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL, expires_at TIMESTAMP)"
    )
    copy = f"\\copy \"{table}\" (key, value, created_at, updated_at, expires_at) FROM '{rows}'"
    command = ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", PG_DB, "-q", "-c", copy]
    ctx.cleanups.append(lambda: psql(f'DROP TABLE IF EXISTS "{table}"'))
    print("  psql \\copy ...", flush=True)
    runs: list[Run] = []
    try:
        for _ in range(cfg.bulk_runs):
            psql(f'DROP TABLE IF EXISTS "{table}"')
            psql(create)
            runs.append(measure(command, env=env))
            stored = int(psql(f'SELECT count(*) FROM "{table}"').strip())
            if stored != n:
                raise BenchError(f"`psql \\copy` stored {stored:,} rows, expected {n:,}")
        seconds = median_seconds(runs)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        report.fail("`psql \\copy`", exc)
        return
    finally:
        with contextlib.suppress(BenchError):
            psql(f'DROP TABLE IF EXISTS "{table}"')
    measure_name = f"Bulk: `load` of {n:,} keys, PostgreSQL, against `psql \\copy`"
    if "PostgreSQL" not in ctx.bulk_rates:
        report.unmeasured(measure_name, "≥ 0.3× `psql \\copy`", "`load` into PostgreSQL failed, see below")
        return
    ours = n / ctx.bulk_rates["PostgreSQL"]
    ratio = seconds / ours
    report.target(
        measure_name,
        f"{fmt_s(ours)}, {fmt_rate(n, ours)}",
        f'{fmt_s(seconds)}, {fmt_rate(n, seconds)} (`psql -c "\\copy TABLE FROM FILE"`)',
        f"{ratio:.2f}×",
        "≥ 0.3× `psql \\copy`",
        ratio >= 0.3,
        f"median of {len(runs)}; the same rows (hex bytea) into a table like the store's, primary key included",
    )

"""Bulk: `anystore load` of many small keys against the original's loop and native tools."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.runner import (
    BULK_BUDGET_SECONDS,
    MARIADB_URI,
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
    make_bulk_files,
    mariadb,
    mariadb_command,
    measure,
    median_seconds,
    peak_rss,
    psql,
    redis_delete,
    to_trash,
)


@dataclass
class NativeTool:
    """The server's or database's own bulk tool, timed against `load` in the same run."""

    label: str
    """How the reference column names it, e.g. `psql -c "\\copy TABLE FROM FILE"`"""
    short: str
    """The tool in the target's wording, e.g. `psql \\copy`"""
    factor: float
    """The target: native seconds / our seconds at least this"""
    run: Callable[[], Run]
    """One timed run into a fresh table or prefix; checks the count, cleans up after"""
    cleanup: Callable[[], object]
    note: str


@dataclass
class BulkTarget:
    name: str
    factor: float
    target: str
    new_args: Callable[[int], list[str]]
    """Store options for run `i` of anystore-cli (a fresh table, prefix or folder each run)"""
    original_args: list[str] | None
    """The original's store arguments; None: the original's loop is not run on this store"""
    count_new: Callable[[int], int]
    cleanup_new: Callable[[int], object]
    cleanup_original: Callable[[], object]
    kept_name: Callable[[int], str] = str
    """The prefix or folder of run `i` (kept for the listing section)"""
    native: NativeTool | None = None


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


EMPTY_RUN_BASE = 100
"""Run numbers of the empty loads (their own table, prefix or folder, never a kept one)"""


def _bulk_empty_run(ctx: Context, target: BulkTarget, i: int, empty: Path) -> Run:
    """`anystore load` of an empty input: the fixed cost of a load (start-up, imports, connection)."""
    try:
        return measure([*ctx.new, *target.new_args(i), "load", "-i", str(empty)], env=ctx.env)
    finally:
        target.cleanup_new(i)


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
    """`anystore load` of many small keys against the original's `store.put` loop, and against
    each server's own bulk tool in the same run."""
    cfg, report, env, rid = ctx.cfg, ctx.report, ctx.env, ctx.run_id
    n = cfg.bulk_keys
    jsonl, resp = ctx.workdir / "bulk.jsonl", ctx.workdir / "bulk.resp"
    pipe_prefix = f"bench-{rid}-pipe"
    print(f"  writing {n:,} keys as JSON lines, Redis protocol, TSV and COPY text ...", flush=True)
    make_bulk_files(jsonl, resp, n, pipe_prefix)
    work = ctx.workdir
    natives = _native_tools(ctx, n, resp, pipe_prefix)

    def new_table(i: int) -> str:
        return f"bench_{rid}_new_{i}"

    def new_prefix(i: int) -> str:
        return f"bench-{rid}-new-{i}"

    def plain_prefix(i: int) -> str:
        return f"bench-{rid}-plain-{i}"

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
            native=natives["sqlite"],
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
            native=natives["PostgreSQL"],
        ),
        BulkTarget(
            "MariaDB",
            0,
            "",
            lambda i: ["--store", MARIADB_URI, "-b", f"table={new_table(i)}"],
            None,  # the original's venv has no MySQL driver
            lambda i: int(mariadb(f"SELECT count(*) FROM `{new_table(i)}`").strip()),
            lambda i: mariadb(f"DROP TABLE IF EXISTS `{new_table(i)}`"),
            lambda: None,
            native=natives["MariaDB"],
        ),
        BulkTarget(
            "Redis",
            10,
            "≥ 10× original",
            lambda i: ["--store", REDIS_URI, "-b", f"redis_prefix={new_prefix(i)}"],
            [REDIS_URI, "--redis-prefix", orig_prefix],
            lambda i: redis_count(work, env, new_prefix(i)),
            lambda i: redis_delete(f"{new_prefix(i)}*"),
            lambda: redis_delete(f"{orig_prefix}*"),
            new_prefix,
            native=natives["Redis, default"],
        ),
        BulkTarget(
            "Redis, values only",
            0,
            "",
            lambda i: ["--store", REDIS_URI, "-b", f"redis_prefix={plain_prefix(i)}", "-b", "redis_timestamps=false"],
            None,  # the original's row is the one above
            lambda i: redis_count(work, env, plain_prefix(i)),
            lambda i: redis_delete(f"{plain_prefix(i)}*"),
            lambda: None,
            plain_prefix,
            native=natives["Redis"],
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
        if target.native is not None:
            ctx.cleanups.append(target.native.cleanup)

    empty_input = ctx.workdir / "empty.jsonl"
    empty_input.write_bytes(b"")
    for target in targets:
        runs: list[Run] = []
        empty_runs: list[Run] = []
        native_runs: list[Run] = []
        native_failed = target.native is None
        original = None
        failed = False
        # the original's loop runs after our first run and before the others, and the native
        # tool right after each of ours, so that all see the same machine (a shared disk's
        # speed drifts from minute to minute)
        for i in range(cfg.bulk_runs):
            if i and sum(r.seconds for r in runs) > BULK_BUDGET_SECONDS and i != cfg.bulk_runs - 1:
                continue  # slow store, busy machine: fewer runs (the last one still runs: listing needs it)
            if not failed:
                print(f"  load into {target.name} ({i + 1}/{cfg.bulk_runs}) ...", flush=True)
                try:
                    runs.append(_bulk_new_run(ctx, target, i, jsonl, n))
                    if target.native is not None:  # the fixed cost: the same command on no lines
                        empty_runs.append(_bulk_empty_run(ctx, target, EMPTY_RUN_BASE + i, empty_input))
                except (BenchError, subprocess.TimeoutExpired) as exc:
                    report.fail(f"`load` into {target.name} (anystore-cli)", exc)
                    runs, failed = [], True
            if not native_failed and target.native is not None:
                print(f"  {target.native.short} ({i + 1}/{cfg.bulk_runs}) ...", flush=True)
                try:
                    native_runs.append(target.native.run())
                except (BenchError, subprocess.TimeoutExpired) as exc:
                    report.fail(f"{target.native.short}", exc)
                    native_runs, native_failed = [], True
                finally:
                    with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                        target.native.cleanup()
            if i == 0 and target.original_args is not None:
                original = _bulk_original_run(ctx, target, jsonl)
        _report_original(ctx, target, n, runs, original)
        _report_native(ctx, target, n, runs, native_runs, empty_runs)

    _redis_equal_work(ctx, n, pipe_prefix)
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
        f'(compact, `{{"key":"bench/NNN/NNNNNN.txt","value":"...{len(bulk_value(0))} characters..."}}`), median of '
        f"up to {cfg.bulk_runs} runs (fewer when they take over {BULK_BUDGET_SECONDS} s) into a fresh table / "
        "prefix / folder each, start-up included; the number of "
        "keys stored is checked with native tools. The reference is bench/original_put_loop.py in the "
        f"original's venv, a loop of `store.put(key, value)` ({limit_note}), timed inside the loop only "
        "(its start-up is not counted: that favours the original; it has no MySQL driver, so it does not "
        "run on MariaDB). sqlite, PostgreSQL and MariaDB use a fresh table (`-b table=...`), Redis a fresh "
        "`redis_prefix`."
    )
    report.notes.append(
        "Bulk against the native tools: after each `load` run, the store's own bulk tool loads the same "
        "rows into a fresh table or prefix (`sqlite3` `.import`, `psql \\copy`, `LOAD DATA LOCAL INFILE` "
        "through the `mariadb` client, `redis-cli --pipe`), whole process timed, its count checked; the "
        "ratio is the tool's median seconds over `load`'s (1.0: as fast)."
    )


def _redis_equal_work(ctx: Context, n: int, pipe_prefix: str) -> None:
    """`redis-cli --pipe` of the same values with their timestamp strings, two SETs a key: the
    server work a Redis `load` asks for (no target; the `--pipe` target row writes values only)."""
    work, env = ctx.workdir, ctx.env
    resp = work / "bulk.stamped.resp"
    stamp = b"1767225600.0 1767225600.0"
    with open(resp, "wb") as protocol:
        for i in range(n):
            key = bulk_key(i).encode()
            for name, value in (
                (f"{pipe_prefix}/".encode() + key, bulk_value(i).encode()),
                (f"{pipe_prefix}\0".encode() + key, stamp),
            ):
                protocol.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(name), name, len(value), value))
    runs: list[Run] = []
    try:
        for _ in range(ctx.cfg.bulk_runs):
            redis_delete(f"{pipe_prefix}*")
            runs.append(measure(["redis-cli", "--pipe"], stdin=resp, env=env))
            stored = redis_count(work, env, pipe_prefix)
            if stored != n:
                raise BenchError(f"`redis-cli --pipe` stored {stored:,} values, expected {n:,}")
    except (BenchError, subprocess.TimeoutExpired) as exc:
        ctx.report.fail("`redis-cli --pipe` with timestamps", exc)
        return
    finally:
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            redis_delete(f"{pipe_prefix}*")
    seconds = median_seconds(runs)
    reached = ""
    if "Redis" in ctx.bulk_rates:
        reached = f"; anystore-cli `load` reaches {ctx.bulk_rates['Redis'] / (n / seconds):.2f}× of this"
    ctx.report.add(
        f"Bulk: `redis-cli --pipe` of the same {n:,} values with their timestamp strings",
        f"{fmt_s(seconds)}, {fmt_rate(n, seconds)}",
        f"two SETs a key (value and `CREATED UPDATED`), the server work of a Redis `load`, median of {len(runs)}"
        + reached,
    )


def sqlite_count(path: Path, table: str) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as con:
        return con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def redis_count(work: Path, env: dict[str, str], prefix: str) -> int:
    measure(["redis-cli", "--scan", "--pattern", f"{prefix}/*"], stdout=work / "scan.out", env=env)
    with open(work / "scan.out", "rb") as handle:
        return sum(1 for _ in handle)


def _report_original(
    ctx: Context, target: BulkTarget, n: int, runs: list[Run], original: dict[str, float] | None
) -> None:
    """The row of `load` against the original's loop (or of `load` alone where it does not run)."""
    report = ctx.report
    measure_name = f"Bulk: `load` of {n:,} keys, {target.name}"
    if not runs:
        if target.original_args is not None:
            report.unmeasured(measure_name, target.target, "`load` failed, see below")
        return
    ours = median_seconds(runs)
    ctx.bulk_rates[target.name] = n / ours
    if target.original_args is None:
        report.add(
            f"{measure_name} (anystore-cli)",
            f"{fmt_s(ours)}, {fmt_rate(n, ours)}",
            f"median of {len(runs)}, peak RSS {fmt_rss(peak_rss(runs))}; the original is not run here",
        )
        return
    if original is None:
        report.unmeasured(measure_name, target.target, "the original's loop failed, see below")
        report.add(f"{measure_name} (anystore-cli)", fmt_s(ours), fmt_rate(n, ours))
        return
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


def _report_native(
    ctx: Context, target: BulkTarget, n: int, runs: list[Run], native_runs: list[Run], empty_runs: list[Run]
) -> None:
    """The target row of `load` against the native tool, both measured in this run; with the
    fixed cost of `load` (the same command on an empty input) and the ratio without it."""
    native = target.native
    if native is None:
        return
    measure_name = f"Bulk: `load` of {n:,} keys, {target.name}, against {native.short}"
    wanted = f"≥ {native.factor:g}× {native.short}"
    if not runs or not native_runs:
        why = "`load` failed, see below" if not runs else f"{native.short} failed, see below"
        ctx.report.unmeasured(measure_name, wanted, why)
        return
    ours, seconds = median_seconds(runs), median_seconds(native_runs)
    ratio = seconds / ours
    ctx.report.target(
        measure_name,
        f"{fmt_s(ours)}, {fmt_rate(n, ours)}",
        f"{fmt_s(seconds)}, {fmt_rate(n, seconds)} ({native.label})",
        f"{ratio:.2f}×",
        wanted,
        ratio >= native.factor,
        f"median of {len(runs)} and {len(native_runs)}, interleaved; {native.note}"
        + _without_start(empty_runs, ours, seconds),
    )


def _without_start(empty_runs: list[Run], ours: float, native: float) -> str:
    """The note on `load`'s fixed cost: its time on an empty input, and the ratio of the rest."""
    if not empty_runs:
        return ""
    start = median_seconds(empty_runs)
    rest = max(ours - start, 1e-9)
    return (
        f"; `load` of an empty input (start-up, imports, connection): {fmt_s(start)}; the rest, the keys' own "
        f"cost: {fmt_s(rest)}, {native / rest:.2f}× the native tool's whole run"
    )


def _native_tools(ctx: Context, n: int, resp: Path, pipe_prefix: str) -> dict[str, NativeTool]:
    """The native bulk tools of the stores, with their input files written once."""
    env, rid, work = ctx.env, ctx.run_id, ctx.workdir
    now = "2026-01-01 00:00:00"
    tsv, pgcopy, sqlite_db = work / "bulk.tsv", work / "bulk.pgcopy", work / "native.db"
    sqlite_tsv = work / "bulk.sqlite.tsv"
    with open(tsv, "w") as plain, open(sqlite_tsv, "w") as five, open(pgcopy, "w") as copy:
        for i in range(n):
            key, value = bulk_key(i), bulk_value(i)  # neither holds a tab, newline or backslash
            # the library's layout: key, value, timestamp, ttl (none), created_at
            plain.write(f"{key}\t{value}\t{now}\t{now}\n")
            five.write(f"{key}\t{value}\t{now}\t\t{now}\n")  # .import fills every column: ttl ''
            copy.write(f"{key}\t\\\\x{value.encode().hex()}\t{now}\t\\N\t{now}\n")

    def sqlite_run() -> Run:
        import sqlite3

        sqlite_db.unlink(missing_ok=True)
        with contextlib.closing(sqlite3.connect(sqlite_db)) as con:  # the store's table, index included
            con.execute(
                "CREATE TABLE bench (key VARCHAR NOT NULL PRIMARY KEY, value BLOB NOT NULL, timestamp DATETIME "
                "DEFAULT (CURRENT_TIMESTAMP), ttl BIGINT, created_at DATETIME) WITHOUT ROWID"
            )
            con.execute("CREATE INDEX ix_bench_ttl ON bench (ttl)")
            con.commit()
        run = measure(["sqlite3", str(sqlite_db), ".mode tabs", f".import {sqlite_tsv} bench"], env=env)
        stored = sqlite_count(sqlite_db, "bench")
        if stored != n:
            raise BenchError(f"`sqlite3 .import` stored {stored:,} rows, expected {n:,}")
        return run

    pg_table = f"bench_{rid}_copy"

    def pg_run() -> Run:
        psql(f'DROP TABLE IF EXISTS "{pg_table}"')
        psql(
            f'CREATE TABLE "{pg_table}" (key VARCHAR COLLATE "C" PRIMARY KEY, value BYTEA NOT NULL, '
            "timestamp TIMESTAMPTZ DEFAULT now(), ttl BIGINT, created_at TIMESTAMPTZ)"
        )
        psql(f'CREATE INDEX ON "{pg_table}" (ttl)')
        copy = f"\\copy \"{pg_table}\" (key, value, timestamp, ttl, created_at) FROM '{pgcopy}'"
        command = ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", PG_DB, "-q", "-c", copy]
        run = measure(command, env=env)
        stored = int(psql(f'SELECT count(*) FROM "{pg_table}"').strip())
        if stored != n:
            raise BenchError(f"`psql \\copy` stored {stored:,} rows, expected {n:,}")
        return run

    my_table = f"bench_{rid}_loaddata"

    def mariadb_run() -> Run:
        mariadb(f"DROP TABLE IF EXISTS `{my_table}`")
        mariadb(  # the store's table, index included
            f"CREATE TABLE `{my_table}` (`key` VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin "
            "NOT NULL PRIMARY KEY, value LONGBLOB NOT NULL, timestamp DATETIME(6) DEFAULT (UTC_TIMESTAMP(6)), "
            "ttl BIGINT, created_at DATETIME(6), INDEX (ttl)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        load = (
            f"LOAD DATA LOCAL INFILE '{tsv}' INTO TABLE `{my_table}` CHARACTER SET utf8mb4 "
            "(`key`, value, timestamp, created_at)"
        )
        run = measure(mariadb_command(load, "--local-infile=1"), env=env)
        stored = int(mariadb(f"SELECT count(*) FROM `{my_table}`").strip())
        if stored != n:
            raise BenchError(f"`LOAD DATA LOCAL INFILE` stored {stored:,} rows, expected {n:,}")
        return run

    def pipe_run() -> Run:
        redis_delete(f"{pipe_prefix}*")
        run = measure(["redis-cli", "--pipe"], stdin=resp, env=env)
        stored = redis_count(work, env, pipe_prefix)
        if stored != n:
            raise BenchError(f"`redis-cli --pipe` stored {stored:,} keys, expected {n:,}")
        return run

    plain_sets = NativeTool(
        "`redis-cli --pipe`",
        "`redis-cli --pipe`",
        0.3,
        pipe_run,
        lambda: redis_delete(f"{pipe_prefix}*"),
        "plain SETs, against `load` with `-b redis_timestamps=false` (values alone; by default `load` "
        "also writes a timestamp string per key: see the row of both)",
    )
    return {
        "Redis": plain_sets,
        # issue 26: the default layout (a timestamp string per key, in the same round trips)
        # against the same plain SETs of the values
        "Redis, default": replace(
            plain_sets,
            note="plain SETs of the values alone, against the default `load` (each value and its timestamp "
            "string, in the same round trips; `redis-cli --pipe` of both is a row below, no target)",
        ),
        "sqlite": NativeTool(
            "`sqlite3 DB .import FILE TABLE`",
            "`sqlite3` `.import`",
            0.25,
            sqlite_run,
            lambda: sqlite_db.unlink(missing_ok=True),
            "the same keys and values (tab-separated, with timestamps; ttl empty) into a table like "
            "the store's (`key, value, timestamp, ttl, created_at`), primary key and ttl index included",
        ),
        "PostgreSQL": NativeTool(
            '`psql -c "\\copy TABLE FROM FILE"`',
            "`psql \\copy`",
            0.3,
            pg_run,
            lambda: psql(f'DROP TABLE IF EXISTS "{pg_table}"'),
            "the same rows (text format, hex bytea) into a table like the store's (`key, value, timestamp, ttl, "
            "created_at`), primary key and ttl index included",
        ),
        "MariaDB": NativeTool(
            '`mariadb --local-infile=1 -e "LOAD DATA LOCAL INFILE ..."`',
            "`LOAD DATA LOCAL INFILE`",
            0.3,
            mariadb_run,
            lambda: mariadb(f"DROP TABLE IF EXISTS `{my_table}`"),
            "the same rows (tab-separated, with timestamps) into a table like the store's (`key, value, timestamp, "
            "ttl, created_at`), primary key and ttl index included",
        ),
    }

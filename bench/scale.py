"""Scale: `load`, `keys` and `dump` at growing numbers of keys (sqlite, Redis, local folder).

Each size gets a fresh store; `load` runs once, `keys` and `dump` (which change nothing) the
median of three runs when a run takes under two seconds. The time per key is the command's time
minus the start-up of the same command on an empty store (the median of three runs before the
first size: measured after a large size instead, it took in the disk's write-back of the store
just removed), over the number of keys: it should not grow by more than 1.5× from the smallest
to the largest size, and peak RSS should stay flat. A size whose work beyond the start-up is
under a quarter of the start-up (a `keys` of 10,000 rows) is too noisy to compare: the
comparison starts at the next size.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.runner import (
    REDIS_URI,
    BenchError,
    Context,
    Run,
    bulk_key,
    bulk_value,
    count_files,
    dump_line,
    fmt_rss,
    fmt_s,
    measure,
    median,
    redis_delete,
    sh,
    to_trash,
)

SIZES = (10_000, 100_000, 1_000_000)
SIZES_QUICK = (10_000, 100_000)
OPERATIONS = ("load", "keys", "dump")
NATIVE_LISTING = {
    "Redis": lambda prefix: ["redis-cli", "--scan", "--pattern", f"{prefix}/*"],
    "local folder": lambda folder: ["find", folder, "-type", "f"],
}
"""The native listing run after each `keys` of the scale section: how its own time per key grows"""
GROWTH_LIMIT = 1.5
"""Largest time per key at the largest size, as a multiple of the smallest size's"""
RSS_GROWTH_LIMIT = 1.5
"""Largest peak RSS at the largest size, as a multiple of the smallest size's"""
STARTUP_BOUND = 0.25
"""A size whose run takes less than this fraction of the start-up beyond it is not compared per key"""
REPEAT_UNDER = 2.0
"""Seconds under which a `keys` or `dump` run is repeated (median of three)"""


def _write_lines(path: Path, count: int) -> None:
    with open(path, "w") as lines:
        for i in range(count):
            lines.write(dump_line(bulk_key(i), bulk_value(i)))


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def section_scale(ctx: Context) -> None:
    """`load`, `keys` and `dump` at 10,000, 100,000 and 1,000,000 keys (quick: the first two)."""
    cfg, report, env, rid, work = ctx.cfg, ctx.report, ctx.env, ctx.run_id, ctx.workdir
    sizes = SIZES_QUICK if cfg.quick else SIZES

    def redis_prefix(n: int) -> str:
        return f"bench-{rid}-scale-{n}"

    stores = {
        "sqlite": (
            lambda n: ["--store", f"sqlite:///{work}/scale-{n}.db", "-b", "table=bench"],
            lambda n: (work / f"scale-{n}.db").unlink(missing_ok=True),
        ),
        "Redis": (
            lambda n: ["--store", REDIS_URI, "-b", f"redis_prefix={redis_prefix(n)}"],
            lambda n: redis_delete(f"{redis_prefix(n)}*"),
        ),
        "local folder": (
            lambda n: ["--store", str(work / f"scale-{n}")],
            lambda n: to_trash(work, work / f"scale-{n}"),
        ),
    }
    for _, cleanup in stores.values():
        for n in (0, *sizes):
            ctx.cleanups.append(lambda c=cleanup, n=n: c(n))

    results: dict[tuple[str, str], dict[int, Run]] = {}
    native_runs: dict[str, dict[int, Run]] = {}
    startup: dict[tuple[str, str], float] = {}
    out = work / "scale.out"
    empty = work / "scale-empty.jsonl"
    empty.write_text("")

    def median_run(command: list[str]) -> Run:
        """A run of a command that changes nothing: the median of three when one is short."""
        runs = [measure(command, stdout=out, env=env)]
        while len(runs) < 3 and runs[0].seconds < REPEAT_UNDER:
            runs.append(measure(command, stdout=out, env=env))
        return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]

    for name, (options, cleanup) in stores.items():
        try:
            # start-up of each command on an empty store: one that exists (a key put and removed),
            # as `keys` and `dump` refuse a SQLite file that is not there
            sh([*ctx.new, *options(0), "put", "scale-probe", "v"], env=env)
            sh([*ctx.new, *options(0), "rm", "scale-probe"], env=env)
            for op, args in (("load", ["load", "-i", str(empty)]), ("keys", ["keys"]), ("dump", ["dump"])):
                command = [*ctx.new, *options(0), *args]
                startup[(name, op)] = median([measure(command, stdout=out, env=env).seconds for _ in range(3)])
            cleanup(0)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            report.fail(f"scale: start-up on {name}", exc)
            continue
        for n in sizes:
            lines = work / f"scale-{n}.jsonl"
            if not lines.exists():
                print(f"  writing {n:,} keys as JSON lines ...", flush=True)
                _write_lines(lines, n)
            print(f"  {name}: load, keys, dump of {n:,} keys ...", flush=True)
            try:
                runs = {
                    "load": measure([*ctx.new, *options(n), "load", "-i", str(lines)], stdout=out, env=env),
                }
                stored = count_files(work / f"scale-{n}") if name == "local folder" else None
                runs["keys"] = median_run([*ctx.new, *options(n), "keys"])
                listed = _count_lines(out)
                native = NATIVE_LISTING.get(name)
                if native is not None:  # the native listing of the same keys, for its own growth
                    where = redis_prefix(n) if name == "Redis" else str(work / f"scale-{n}")
                    native_runs.setdefault(name, {})[n] = measure(native(where), stdout=out, env=env)
                    if (natively := _count_lines(out)) != n:
                        raise BenchError(f"`{' '.join(native(where))}` listed {natively:,} keys, expected {n:,}")
                runs["dump"] = median_run([*ctx.new, *options(n), "dump"])
                dumped = _count_lines(out)
                if listed != n or dumped != n or stored not in (None, n):
                    raise BenchError(f"{n:,} keys loaded, {listed:,} listed, {dumped:,} dumped")
                for op, run in runs.items():
                    results.setdefault((name, op), {})[n] = run
            except (BenchError, subprocess.TimeoutExpired) as exc:
                report.fail(f"scale: {n:,} keys on {name}", exc)
            finally:
                cleanup(n)
                out.unlink(missing_ok=True)

    for (name, op), by_size in results.items():
        measure_name = f"Scale: `{op}`, {name}"
        target = f"per key ≤ {GROWTH_LIMIT}× and RSS ≤ {RSS_GROWTH_LIMIT}× from {sizes[0]:,} to {sizes[-1]:,} keys"
        if set(by_size) != set(sizes):
            report.unmeasured(measure_name, target, "a size failed, see below")
            continue
        base = startup[(name, op)]

        def per_key(n: int, runs: dict[int, Run] = by_size, base: float = base) -> float:
            return max(runs[n].seconds - base, 1e-9) / n

        cells = [
            f"{n:,}: {per_key(n) * 1e6:.1f} µs/key ({fmt_s(by_size[n].seconds)}), {fmt_rss(by_size[n].maxrss)}"
            for n in sizes
        ]
        first, last = sizes[0], sizes[-1]
        rss_growth = by_size[last].maxrss / by_size[first].maxrss
        # a size whose work is small next to the start-up gives no time per key worth comparing
        judged = [n for n in sizes if by_size[n].seconds - base >= STARTUP_BOUND * base]
        reference = f"start-up {fmt_s(base)} (empty store, median of 3) taken off"
        if len(judged) < 2 or judged[-1] != last:
            report.target(
                measure_name,
                "; ".join(cells),
                reference,
                f"{rss_growth:.2f}× RSS",
                target,
                None,
                "start-up bound: too few sizes with work beyond the start-up to compare per key",
            )
            continue
        growth = per_key(last) / per_key(judged[0])
        note = "" if judged[0] == first else f"per key compared from {judged[0]:,} (smaller sizes are start-up bound)"
        natives = native_runs.get(name, {}) if op == "keys" else {}
        if set(natives) == set(sizes):
            label = "`redis-cli --scan`" if name == "Redis" else "`find DIR -type f`"
            times = ", ".join(f"{n:,}: {natives[n].seconds / n * 1e6:.2f} µs/key" for n in sizes)
            native_growth = (natives[last].seconds / last) / (natives[judged[0]].seconds / judged[0])
            note = "; ".join(
                [*([note] if note else []), f"{label} over the same keys: {times}, {native_growth:.2f}× per key"]
            )
        report.target(
            measure_name,
            "; ".join(cells),
            reference,
            f"{growth:.2f}× per key, {rss_growth:.2f}× RSS",
            target,
            growth <= GROWTH_LIMIT and rss_growth <= RSS_GROWTH_LIMIT,
            note,
        )
    report.notes.append(
        f"Scale: `load -i FILE` of {', '.join(f'{n:,}' for n in sizes)} JSON lines as in the bulk rows into a "
        "fresh store each (sqlite file, Redis prefix, local folder), then `keys` and `dump` of it, each run once "
        "and checked (keys listed and dumped). Time per key is the run's time minus the same command's start-up on "
        "an empty store, over the number of keys; peak RSS as above. After each `keys`, the native listing of the "
        "same keys (`redis-cli --scan --pattern 'PREFIX/*'`, `find DIR -type f`) runs once too: its own time per key "
        "at each size is in the note of the `keys` rows (a Redis SCAN walks the whole database, whatever the prefix)."
    )

"""Listing: `anystore keys` over many keys against `find` and `redis-cli --scan`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from bench.runner import (
    REDIS_URI,
    BenchError,
    Context,
    Run,
    _show,
    bulk_key,
    bulk_value,
    fmt_rss,
    fmt_s,
    interleaved,
    make_bulk_files,
    measure,
    median_seconds,
    redis_delete,
)


def section_listing(ctx: Context) -> None:
    """`anystore keys` over many keys against `find` and `redis-cli --scan`."""
    cfg, report, env = ctx.cfg, ctx.report, ctx.env
    n = cfg.bulk_keys
    work = ctx.workdir
    local, prefix = ctx.kept_local, ctx.kept_redis_prefix
    if local is None or prefix is None:
        # the bulk section did not run (or failed): build the data natively
        print(f"  building {n:,} keys for listing ...", flush=True)
        if local is None:
            local = work / "listing-local"
            for i in range(n):
                path = local / bulk_key(i)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(bulk_value(i))
        if prefix is None:
            prefix = f"bench-{ctx.run_id}-listing"
            resp = work / "listing.resp"
            make_bulk_files(work / "listing.jsonl", resp, n, prefix)
            measure(["redis-cli", "--pipe"], stdin=resp, env=env)
            ctx.cleanups.append(lambda: redis_delete(f"{prefix}*"))
    original_redis_env = {**env, "ANYSTORE_BACKEND_CONFIG": json.dumps({"redis_prefix": prefix})}
    empty = work / "listing-empty"
    empty.mkdir(exist_ok=True)
    groups = {
        "local folder": (
            {
                "new": ([*ctx.new, "--store", str(local), "keys"], env),
                "native": (["find", str(local), "-type", "f"], env),
                "original": ([*ctx.original, "--store", str(local), "keys"], env),
                # the fixed costs: the same commands over an empty folder
                "new-empty": ([*ctx.new, "--store", str(empty), "keys"], env),
                "native-empty": (["find", str(empty), "-type", "f"], env),
            },
            1.5,
            "≤ 1.5× `find`",
            "`find DIR -type f`",
        ),
        "Redis": (
            {
                "new": ([*ctx.new, "--store", REDIS_URI, "-b", f"redis_prefix={prefix}", "keys"], env),
                "native": (["redis-cli", "--scan", "--pattern", f"{prefix}/*"], env),
                "original": ([*ctx.original, "--store", REDIS_URI, "keys"], original_redis_env),
            },
            1.0,
            "≤ 1× `redis-cli --scan`",
            f"`redis-cli --scan --pattern '{prefix}/*'`",
        ),
    }
    for store_name, (commands, limit, target, native_label) in groups.items():
        measure_name = f"Listing: `keys` over {n:,} keys, {store_name}"
        print(f"  listing {store_name} x {cfg.listing_runs} ...", flush=True)
        usable: dict[str, Callable[[], Run]] = {}
        rss: dict[str, int] = {}
        for who, (cmd, cmd_env) in commands.items():
            try:
                out = work / "keys.out"
                rss[who] = measure(cmd, stdout=out, env=cmd_env).maxrss
                with open(out, "rb") as handle:
                    lines = sum(1 for _ in handle)
                out.unlink()
                expected = 0 if who.endswith("-empty") else n
                if lines != expected:
                    raise BenchError(f"`{_show(cmd)}` listed {lines:,} keys, expected {expected:,}")
            except (BenchError, subprocess.TimeoutExpired) as exc:
                report.fail(f"`keys` on {store_name} ({who})", exc)
                continue
            usable[who] = lambda cmd=cmd, cmd_env=cmd_env: measure(cmd, env=cmd_env, exact_rss=False)
        # the original is slow and only context: one timed run after the check above
        original = usable.pop("original", None)
        results = interleaved(usable, cfg.listing_runs, warmup=0)
        if "new" in results and "native" in results:
            ours, native = median_seconds(results["new"]), median_seconds(results["native"])
            note = f"peak RSS {fmt_rss(rss['new'])}"
            if "new-empty" in results and "native-empty" in results:
                ours_empty, native_empty = median_seconds(results["new-empty"]), median_seconds(results["native-empty"])
                note += (
                    f"; over no keys (start-up): {fmt_s(ours_empty)} vs {fmt_s(native_empty)}; the rest, "
                    f"the {n:,} keys' own cost: {fmt_s(ours - ours_empty)} vs {fmt_s(native - native_empty)}, "
                    f"{(ours - ours_empty) / max(native - native_empty, 1e-9):.2f}×"
                )
            report.target(
                measure_name,
                fmt_s(ours),
                f"{fmt_s(native)} ({native_label})",
                f"{ours / native:.2f}×",
                target,
                ours / native <= limit,
                note,
            )
        else:
            report.unmeasured(measure_name, target, "a command failed, see below")
        if original is not None:
            run = original()
            report.add(
                f"Original: `keys` over {n:,} keys, {store_name}",
                fmt_s(run.seconds),
                f"peak RSS {fmt_rss(rss['original'])}",
            )
    report.notes.append(
        f"Listing: median of {cfg.listing_runs} interleaved runs, stdout to /dev/null, whole processes (start-up "
        f"included), over the {n:,} keys that `load` wrote in the bulk section, or that the listing section wrote "
        "natively when bulk did not run (a local folder of folders of 1,000 files, `redis-cli --pipe`); every "
        "command's line count is checked first. Redis SCANs match `PREFIX/*` (what the store's keys are: anystore-cli "
        "also keeps a timestamp string per key under `PREFIX\\0KEY`, so the database holds twice as many keys). Each "
        "command on the local folder also runs over an empty folder, interleaved with the others: that is its fixed "
        "start-up, and the difference is the cost of the keys themselves (not on Redis: a SCAN for an unused prefix "
        "still walks the whole database)."
    )

"""Infos: `keys -l` and `keys --json` against plain `keys`."""

from __future__ import annotations

import json
from collections.abc import Callable

from bench.runner import (
    BenchError,
    Context,
    Run,
    _show,
    bulk_key,
    bulk_value,
    fmt_rss,
    fmt_s,
    interleaved,
    measure,
    median_seconds,
)


def section_infos(ctx: Context) -> None:
    """`keys -l` and `keys --json` against plain `keys` on one sqlite store: the metadata comes
    with the listing (one SELECT), not from a lookup per key."""
    cfg, report, env = ctx.cfg, ctx.report, ctx.env
    n = 20_000 if cfg.quick else 50_000
    db = ctx.workdir / "infos.db"
    lines = ctx.workdir / "infos.jsonl"
    with open(lines, "w") as handle:
        for i in range(n):
            handle.write(json.dumps({"key": bulk_key(i), "value": bulk_value(i)}) + "\n")
    store = [*ctx.new, "--store", f"sqlite:///{db}"]
    print(f"  loading {n:,} keys into sqlite ...", flush=True)
    measure([*store, "load", "-i", str(lines)], env=env)
    commands = {"keys": [*store, "keys"], "-l": [*store, "keys", "-l"], "--json": [*store, "keys", "--json"]}
    usable: dict[str, Callable[[], Run]] = {}
    rss: dict[str, int] = {}
    for name, cmd in commands.items():
        try:
            out = ctx.workdir / "infos.out"
            rss[name] = measure(cmd, stdout=out, env=env).maxrss
            with open(out, "rb") as handle:
                count = sum(1 for _ in handle)
            out.unlink()
            if count != n:
                raise BenchError(f"`{_show(cmd)}` printed {count:,} lines, expected {n:,}")
        except BenchError as exc:
            report.fail(f"`keys {name}` on sqlite", exc)
            continue
        usable[name] = lambda cmd=cmd: measure(cmd, env=env, exact_rss=False)
    print(f"  listing with metadata x {cfg.listing_runs} ...", flush=True)
    results = interleaved(usable, cfg.listing_runs)
    for option in ("-l", "--json"):
        measure_name = f"Listing: `keys {option}` over {n:,} keys, sqlite"
        if option not in results or "keys" not in results:
            report.unmeasured(measure_name, "≤ 3× `keys`", "a command failed, see below")
            continue
        ours, plain = median_seconds(results[option]), median_seconds(results["keys"])
        report.target(
            measure_name,
            fmt_s(ours),
            f"{fmt_s(plain)} (`keys`)",
            f"{ours / plain:.2f}×",
            "≤ 3× `keys`",
            ours / plain <= 3.0,
            f"peak RSS {fmt_rss(rss[option])}",
        )
    report.notes.append(
        f"Listing with metadata: median of {cfg.listing_runs} interleaved runs of `keys`, `keys -l` and "
        f"`keys --json` on one sqlite store of {n:,} keys (stdout to /dev/null, line counts checked first). "
        "Sizes and times come from the listing's one SELECT, not from a lookup per key."
    )

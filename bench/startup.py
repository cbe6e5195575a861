"""Start-up: a small `get`, `--version`, and the Redis and native horizon."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

from bench.runner import (
    REDIS_URI,
    SMALL_KEY,
    SMALL_VALUE,
    BenchError,
    Context,
    Run,
    _show,
    fmt_rss,
    fmt_s,
    interleaved,
    measure,
    median_seconds,
    redis_delete,
    sh,
)


def section_startup(ctx: Context) -> None:
    """Start-up: a small `get` on a local folder, `--version`, and the Redis and native horizon."""
    cfg, report, env = ctx.cfg, ctx.report, ctx.env
    store = ctx.workdir / "startup-store"
    store.mkdir()
    (store / SMALL_KEY).write_bytes(SMALL_VALUE)
    prefix = f"bench-{ctx.run_id}-startup"
    sh(["redis-cli", "SET", f"{prefix}/{SMALL_KEY}", SMALL_VALUE.decode()])
    ctx.cleanups.append(lambda: redis_delete(f"{prefix}*"))
    original_redis_env = {**env, "ANYSTORE_BACKEND_CONFIG": json.dumps({"redis_prefix": prefix})}

    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "new get": ([*ctx.new, "--store", str(store), "get", SMALL_KEY], env),
        "original get": ([*ctx.original, "--store", str(store), "get", SMALL_KEY], env),
        "cat": (["cat", str(store / SMALL_KEY)], env),
        "new --version": ([*ctx.new, "--version"], env),
        "original --version": ([*ctx.original, "--version"], env),
        "new redis get": ([*ctx.new, "--store", REDIS_URI, "-b", f"redis_prefix={prefix}", "get", SMALL_KEY], env),
        "original redis get": ([*ctx.original, "--store", REDIS_URI, "get", SMALL_KEY], original_redis_env),
        "redis-cli get": (["redis-cli", "get", f"{prefix}/{SMALL_KEY}"], env),
    }
    if shutil.which("rclone"):
        commands["rclone cat"] = (["rclone", "cat", str(store / SMALL_KEY)], env)

    usable: dict[str, Callable[[], Run]] = {}
    rss: dict[str, int] = {}
    for name, (cmd, cmd_env) in commands.items():
        try:
            run = measure(cmd, stdout=None, env=cmd_env)
            rss[name] = run.maxrss
            expected = SMALL_VALUE.strip() if "redis-cli" in name else SMALL_VALUE
            if "--version" not in name and run.stdout.strip() != expected.strip():
                raise BenchError(f"`{_show(cmd)}` printed {run.stdout[:80]!r}, expected {SMALL_VALUE!r}")
        except BenchError as exc:
            report.fail(f"start-up `{name}`", exc)
            continue
        usable[name] = lambda cmd=cmd, cmd_env=cmd_env: measure(cmd, env=cmd_env, exact_rss=False)
    print(f"  timing {len(usable)} commands x {cfg.startup_runs} runs ...", flush=True)
    results = interleaved(usable, cfg.startup_runs)
    t = {name: median_seconds(runs) for name, runs in results.items()}

    def ratio_row(measure_name: str, ours: str, ref: str, limit: float, target: str) -> None:
        if ours in t and ref in t:
            ratio = t[ours] / t[ref]
            report.target(
                measure_name,
                fmt_s(t[ours]),
                f"{fmt_s(t[ref])} (original)",
                f"{ratio:.2f} (1/{1 / ratio:.1f})",
                target,
                ratio <= limit,
            )
        else:
            report.unmeasured(measure_name, target, "command failed, see below")

    ratio_row("Start-up: `get KEY`, local folder", "new get", "original get", 0.25, "≤ 1/4 of original")
    ratio_row("Start-up: `--version`", "new --version", "original --version", 0.20, "≤ 1/5 of original")
    for name in ("cat", "rclone cat", "new redis get", "original redis get", "redis-cli get"):
        if name in t:
            label = {
                "cat": "Start-up horizon: `cat FILE`",
                "rclone cat": "Start-up horizon: `rclone cat FILE`",
                "new redis get": "Start-up: anystore-cli `get KEY` on Redis",
                "original redis get": "Start-up: original `get KEY` on Redis",
                "redis-cli get": "Start-up horizon: `redis-cli get KEY`",
            }[name]
            note = f"peak RSS {fmt_rss(rss[name])}"
            if "new get" in t and name in ("cat", "rclone cat", "redis-cli get"):
                note += f"; anystore-cli local `get` is {t['new get'] / t[name]:.1f}× this"
            report.add(label, fmt_s(t[name]), note)
    if not shutil.which("rclone"):
        report.add("Start-up horizon: `rclone cat FILE`", "not measured", "rclone is not installed on this machine")
    for name in ("new get", "original get"):
        if name in rss:
            who = "anystore-cli" if name.startswith("new") else "original"
            report.add(f"Peak RSS: {who} `get` of a small value", fmt_rss(rss[name]))
    report.notes.append(
        f"Start-up: median wall-clock time of {cfg.startup_runs} runs after one warm-up run, the commands "
        f"interleaved, stdout to /dev/null; the value is {len(SMALL_VALUE)} bytes. Both CLIs get "
        "`--store DIR get KEY` on the same folder. Children run without PYTHONDONTWRITEBYTECODE, so "
        "both use compiled bytecode as a pip-installed package would."
    )

"""Start-up: a small `get` on each backend, `--version`, and the native horizon."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.runner import (
    AWS_ENV,
    REDIS_URI,
    S3_BUCKET,
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
    moto_server,
    redis_delete,
    sh,
)

# the start-up targets of issue 26 against the horizon a shell sees: (row, ours, reference, limit)
HORIZON_TARGETS = (
    ("Start-up: `get KEY`, local folder, against `rclone cat`", "new get", "rclone cat", 1.0),
    ("Start-up: `get KEY`, Redis, against the bare interpreter", "new redis get", "python -c pass", 5.0),
    ("Start-up: `get KEY`, SQLite, against the bare interpreter", "new sqlite get", "python -c pass", 6.0),
    ("Start-up: `get KEY`, S3 (moto), against the bare interpreter", "new s3 get", "python -c pass", 10.0),
)


FLOORS = {
    "floor typer app": "Start-up floor: a one-command typer app that prints the file (`bench/floor_app.py`)",
    "floor import typer": "Start-up floor: `python -c 'import typer'`",
    "floor import redis": "Start-up floor: `python -c 'import redis'` (redis-py, the Redis client)",
    "floor import s3fs": "Start-up floor: `python -c 'import s3fs'` (the S3 client, before any request)",
}
"""What the framework and the client libraries cost on their own, timed with the commands"""

_CLIENT_FLOOR = {"new redis get": "floor import redis", "new s3 get": "floor import s3fs"}


def _floor_note(t: dict[str, float], ours: str, ref: str) -> str:
    """What the floors under a start-up row cost against the same reference."""
    parts = []
    if "floor typer app" in t:
        parts.append(f"a one-command typer app alone: {t['floor typer app'] / t[ref]:.2f}×")
    client = _CLIENT_FLOOR.get(ours)
    if client in t:
        parts.append(f"`{client.removeprefix('floor ')}` alone: {t[client] / t[ref]:.2f}×")
    return "; " + ", ".join(parts) if parts else ""


def interpreter_of(command: list[str]) -> str:
    """The Python of the venv that runs `command` (its script's neighbour), for `python -c pass`."""
    candidate = Path(command[0]).parent / "python"
    return str(candidate) if candidate.exists() else shutil.which("python3") or "python3"


@contextlib.contextmanager
def _s3_store(ctx: Context, value_file: Path) -> Iterator[tuple[list[str], dict[str, str]] | None]:
    """A moto S3 store holding the small key, as `--store` arguments and environment; None when
    moto does not start (the S3 row is then reported as failed)."""
    try:
        with moto_server(ctx.workdir) as endpoint:
            args = ["--store", f"s3://{S3_BUCKET}/startup", "-b", f"endpoint_url={endpoint}"]
            env = {**ctx.env, **AWS_ENV}
            sh([*ctx.new, *args, "put", SMALL_KEY, "-i", str(value_file)], env=env)
            yield args, env
    except BenchError as exc:
        ctx.report.fail("start-up: S3 store on moto", exc)
        yield None


def section_startup(ctx: Context) -> None:
    """Start-up: a small `get` on a local folder, Redis, SQLite and S3, `--version`, and the
    native horizon (`cat`, `rclone cat`, `redis-cli`, the bare interpreter)."""
    env = ctx.env
    store = ctx.workdir / "startup-store"
    store.mkdir()
    (store / SMALL_KEY).write_bytes(SMALL_VALUE)
    prefix = f"bench-{ctx.run_id}-startup"
    sh(["redis-cli", "SET", f"{prefix}/{SMALL_KEY}", SMALL_VALUE.decode()])
    ctx.cleanups.append(lambda: redis_delete(f"{prefix}*"))
    original_redis_env = {**env, "ANYSTORE_BACKEND_CONFIG": json.dumps({"redis_prefix": prefix})}
    sqlite_store = ["--store", f"sqlite:///{ctx.workdir / 'startup.db'}"]
    sh([*ctx.new, *sqlite_store, "put", SMALL_KEY, "-i", str(store / SMALL_KEY)], env=env)

    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "new get": ([*ctx.new, "--store", str(store), "get", SMALL_KEY], env),
        "original get": ([*ctx.original, "--store", str(store), "get", SMALL_KEY], env),
        "cat": (["cat", str(store / SMALL_KEY)], env),
        "python -c pass": ([interpreter_of(ctx.new), "-c", "pass"], env),
        "new --version": ([*ctx.new, "--version"], env),
        "original --version": ([*ctx.original, "--version"], env),
        "new redis get": ([*ctx.new, "--store", REDIS_URI, "-b", f"redis_prefix={prefix}", "get", SMALL_KEY], env),
        "original redis get": ([*ctx.original, "--store", REDIS_URI, "get", SMALL_KEY], original_redis_env),
        "redis-cli get": (["redis-cli", "get", f"{prefix}/{SMALL_KEY}"], env),
        "new sqlite get": ([*ctx.new, *sqlite_store, "get", SMALL_KEY], env),
    }
    python = interpreter_of(ctx.new)
    # the floors under our commands, timed in the same run: the framework and the client libraries
    commands["floor typer app"] = ([python, str(Path(__file__).with_name("floor_app.py")), str(store / SMALL_KEY)], env)
    commands["floor import typer"] = ([python, "-c", "import typer"], env)
    commands["floor import redis"] = ([python, "-c", "import redis"], env)
    commands["floor import s3fs"] = ([python, "-c", "import s3fs"], env)
    if shutil.which("rclone"):
        commands["rclone cat"] = (["rclone", "cat", str(store / SMALL_KEY)], env)
    with _s3_store(ctx, store / SMALL_KEY) as s3:
        if s3 is not None:
            commands["new s3 get"] = ([*ctx.new, *s3[0], "get", SMALL_KEY], s3[1])
        _time_startup(ctx, commands)


def _time_startup(ctx: Context, commands: dict[str, tuple[list[str], dict[str, str]]]) -> None:
    """Check each command's output once, time them interleaved, and report the rows."""
    cfg, report = ctx.cfg, ctx.report
    usable: dict[str, Callable[[], Run]] = {}
    rss: dict[str, int] = {}
    for name, (cmd, cmd_env) in commands.items():
        try:
            run = measure(cmd, stdout=None, env=cmd_env)
            rss[name] = run.maxrss
            expected = SMALL_VALUE.strip() if "redis-cli" in name else SMALL_VALUE
            checked = "--version" not in name and name != "python -c pass" and not name.startswith("floor import")
            if checked and run.stdout.strip() != expected.strip():
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
    for measure_name, ours, ref, limit in HORIZON_TARGETS:
        target = f"≤ {limit:g}× `{ref}`"
        if ours in t and ref in t:
            ratio = t[ours] / t[ref]
            note = f"peak RSS {fmt_rss(rss[ours])}" + _floor_note(t, ours, ref)
            report.target(
                measure_name,
                fmt_s(t[ours]),
                f"{fmt_s(t[ref])} (`{ref}`)",
                f"{ratio:.2f}×",
                target,
                ratio <= limit,
                note,
            )
        else:
            why = (
                "rclone is not installed on this machine"
                if ref == "rclone cat" and ref not in t
                else ("command failed, see below")
            )
            report.unmeasured(measure_name, target, why)
    for name in ("cat", "rclone cat", "python -c pass", "new redis get", "original redis get", "redis-cli get"):
        if name in t:
            label = {
                "cat": "Start-up horizon: `cat FILE`",
                "rclone cat": "Start-up horizon: `rclone cat FILE`",
                "python -c pass": "Start-up horizon: `python -c pass` (the venv's interpreter)",
                "new redis get": "Start-up: anystore-cli `get KEY` on Redis",
                "original redis get": "Start-up: original `get KEY` on Redis",
                "redis-cli get": "Start-up horizon: `redis-cli get KEY`",
            }[name]
            note = f"peak RSS {fmt_rss(rss[name])}"
            if "new get" in t and name in ("cat", "rclone cat", "redis-cli get"):
                note += f"; anystore-cli local `get` is {t['new get'] / t[name]:.1f}× this"
            report.add(label, fmt_s(t[name]), note)
    for name, label in FLOORS.items():
        if name in t and "python -c pass" in t:
            report.add(label, fmt_s(t[name]), f"{t[name] / t['python -c pass']:.1f}× `python -c pass`")
    if not shutil.which("rclone"):
        report.add("Start-up horizon: `rclone cat FILE`", "not measured", "rclone is not installed on this machine")
    for name in ("new get", "original get"):
        if name in rss:
            who = "anystore-cli" if name.startswith("new") else "original"
            report.add(f"Peak RSS: {who} `get` of a small value", fmt_rss(rss[name]))
    report.notes.append(
        f"Start-up: median wall-clock time of {cfg.startup_runs} runs after one warm-up run, the commands "
        f"interleaved, stdout to /dev/null; the value is {len(SMALL_VALUE)} bytes. Both CLIs get "
        "`--store DIR get KEY` on the same folder. The `get` of the same value from Redis, a SQLite "
        "file and S3 on a moto server on loopback (started before the timing, idle between requests) "
        "is compared with `python -c pass` of the interpreter `anystore` runs on. Children run without "
        "PYTHONDONTWRITEBYTECODE, so "
        "both use compiled bytecode as a pip-installed package would. The floors (a one-command typer "
        "app, `import typer`, `import redis`, `import s3fs`, on the same interpreter) are timed in the "
        "same interleaved runs: what the framework and each client library cost before our code runs."
    )

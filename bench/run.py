#!/usr/bin/env python
"""Benchmarks for anystore-cli against the original anystore 0.3.0 CLI and native tools (issue 6).

One command, run from the repository's virtual environment:

    python bench/run.py            # full run (1 GiB values, 100,000 keys), writes bench/RESULTS.md
    python bench/run.py --quick    # smaller run (256 MiB, 20,000 keys), writes bench/results/RESULTS-quick.md

The script builds its own data in a temporary folder, creates the original CLI's virtual
environment (bench/.venv-original, from PyPI) when it is missing, starts a moto S3 server on
loopback, and uses the Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database `test`,
user `postgres`) servers of the machine with fresh prefixes and tables that it removes again.

It only measures: nothing here fails on a missed target. Times are wall-clock medians of several
runs, side by side in the same run (commands interleaved); peak memory is the child's
`ru_maxrss` as `os.wait4` reports it. This file imports only the standard library, so that its own
memory stays small (a child started by `vfork` inherits the parent's peak RSS as its floor).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ORIGINAL_VENV = BENCH / ".venv-original"
ORIGINAL_VERSION = "0.3.0"
# psycopg2-binary: SQLAlchemy 2.1 (which anystore 0.3.0 allows) no longer brings a PostgreSQL
# driver; the original's sql extra does not either.
ORIGINAL_REQUIREMENTS = [f"anystore[redis,sql]=={ORIGINAL_VERSION}", "psycopg2-binary"]
PUT_LOOP = BENCH / "original_put_loop.py"

REDIS_URI = "redis://127.0.0.1:6379/0"
PG_HOST, PG_PORT, PG_USER, PG_DB = "127.0.0.1", 5432, "postgres", "test"
PG_URI = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"
# the original creates its engine straight from the uri; SQLAlchemy 2.1 maps postgresql:// to
# psycopg 3, so it is given the psycopg2 driver explicitly
PG_URI_ORIGINAL = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"
S3_BUCKET = "anystore-bench"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MIB = 1024 * 1024
SMALL_VALUE = b"hello from the anystore benchmark\n"
SMALL_KEY = "hello.txt"
TIMEOUT = 900.0
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None
REDIS_DELETE_SCRIPT = (
    "local n = 0 local cursor = '0' repeat "
    "local reply = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000) cursor = reply[1] "
    "for _, key in ipairs(reply[2]) do redis.call('UNLINK', key) n = n + 1 end "
    "until cursor == '0' return n"
)


# -- configuration -----------------------------------------------------------------------------


@dataclass
class Config:
    quick: bool
    startup_runs: int
    big_bytes: int
    stream_runs: int
    bulk_keys: int
    bulk_runs: int
    listing_runs: int
    original_bulk_limit: int | None
    """Keys the original's loop writes on every store (0: all); None: the per-store default"""
    sections: set[str]
    output: Path
    keep: bool
    tmpdir: str | None
    cli: str | None

    @property
    def big_label(self) -> str:
        return _size_label(self.big_bytes)


SECTIONS = ("startup", "memory", "bulk", "listing", "infos", "dumpload", "sync")
SYNC_KEYS = 10_000
"""Keys of the sync section: a second `mirror` of them against listing both sides"""
# The original commits every `put` on SQL stores (about 1 ms a key here, far more on a busy
# machine), so by default its loop writes the first keys only there and rates are compared.
SQL_ORIGINAL_LIMIT = 20_000
SQL_ORIGINAL_LIMIT_QUICK = 5_000
# ... and on any store it stops after this long (rates are compared; a busy disk can slow its
# per-key commits a hundredfold)
BULK_BUDGET_SECONDS = 60
"""After this many seconds of `load` runs into one store, skip to its last run"""
ORIGINAL_MAX_SECONDS = 60
ORIGINAL_MAX_SECONDS_QUICK = 20


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller run: 256 MiB values, 20,000 keys, fewer repeats")
    parser.add_argument("--only", help=f"comma-separated sections to run ({', '.join(SECTIONS)})")
    parser.add_argument("--size-mib", type=int, help="size of the big value in MiB (default 1024, quick 256)")
    parser.add_argument("--keys", type=int, help="number of keys for bulk and listing (default 100000, quick 20000)")
    parser.add_argument(
        "--original-bulk-limit",
        type=int,
        help="keys the original's put loop writes on every store, rates compared (0: all keys; default: "
        f"all on Redis and local, {SQL_ORIGINAL_LIMIT:,} on sqlite and PostgreSQL, "
        f"{SQL_ORIGINAL_LIMIT_QUICK:,} with --quick)",
    )
    parser.add_argument("--output", type=Path, help="markdown file to write (default bench/RESULTS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--tmpdir", help="where to create the temporary folder (default: the system's)")
    parser.add_argument("--cli", help="the anystore-cli command to measure (default: `anystore` next to this Python)")
    args = parser.parse_args(argv)
    sections = set(SECTIONS)
    if args.only:
        sections = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = sections - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    partial = args.quick or args.only or args.size_mib or args.keys or args.original_bulk_limit is not None or args.cli
    output = args.output or (BENCH / "results" / "RESULTS-quick.md" if partial else BENCH / "RESULTS.md")
    return Config(
        quick=args.quick,
        startup_runs=5 if args.quick else 10,
        big_bytes=(args.size_mib or (256 if args.quick else 1024)) * MIB,
        stream_runs=3 if args.quick else 5,
        bulk_keys=args.keys or (20_000 if args.quick else 100_000),
        bulk_runs=1 if args.quick else 3,
        listing_runs=3 if args.quick else 5,
        original_bulk_limit=args.original_bulk_limit,
        sections=sections,
        output=output,
        keep=args.keep,
        tmpdir=args.tmpdir,
        cli=args.cli,
    )


# -- running and measuring processes -------------------------------------------------------------


class BenchError(Exception):
    """A command failed or gave a wrong answer; the row is reported as not measured."""


@dataclass
class Run:
    seconds: float
    maxrss: int
    """Peak resident set size of the child in bytes"""
    returncode: int
    stdout: bytes
    stderr: bytes


def measure(
    cmd: Sequence[str],
    *,
    stdin: Path | None = None,
    stdout: Path | str | None = os.devnull,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = TIMEOUT,
    exact_rss: bool = True,
) -> Run:
    """Run `cmd` once; wall-clock time from start to exit and the child's peak RSS.

    `stdout` is a path (default /dev/null) or None to capture it (small outputs only).

    A child started with `vfork` (as `subprocess` does) inherits this process's peak RSS as the
    floor of its own `ru_maxrss`. With `exact_rss` (and GNU time installed) the command runs under
    `/usr/bin/time -f %M`, a small C program whose forked child starts from a clean count; that
    costs a fork (about a millisecond), so start-up timings pass `exact_rss=False`.
    """
    shown = _show(cmd)
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(tempfile.TemporaryFile())
        rss_file = None
        if exact_rss and GNU_TIME:
            rss_file = stack.enter_context(tempfile.NamedTemporaryFile(prefix="rss-"))
            cmd = [GNU_TIME, "-o", rss_file.name, "-f", "%M", *cmd]
        out_capture = None
        if stdout is None:
            out_capture = stack.enter_context(tempfile.TemporaryFile())
            out = out_capture
        else:
            out = stack.enter_context(open(stdout, "wb"))  # noqa: SIM115 - closed by the stack
        inp = stack.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL  # noqa: SIM115
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdin=inp, stdout=out, stderr=err, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
        captured = b""
        if out_capture is not None:
            out_capture.seek(0)
            captured = out_capture.read()
        maxrss = usage.ru_maxrss * 1024
        if rss_file is not None:
            reported = Path(rss_file.name).read_text().split()
            if reported and reported[-1].isdigit():
                maxrss = int(reported[-1]) * 1024
    run = Run(seconds, maxrss, proc.returncode, captured, stderr)
    if check and run.returncode != 0:
        raise BenchError(f"`{shown}` exited {run.returncode}: {_tail(stderr)}")
    return run


def _show(cmd: Sequence[str]) -> str:
    shown = []
    for part in cmd:
        part = str(part)
        if part.startswith(str(BENCH)):
            part = "bench" + part[len(str(BENCH)) :]
        shown.append(part)
    return " ".join(shown)


def _tail(data: bytes, limit: int = 400) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " | ")
    return text[-limit:] if text else "(no stderr)"


def sh(cmd: Sequence[str], env: dict[str, str] | None = None, stdin: bytes | None = None) -> str:
    """Run a setup command and return its stdout; raise `BenchError` on failure."""
    proc = subprocess.run(list(cmd), input=stdin, capture_output=True, env=env, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise BenchError(f"`{_show(cmd)}` exited {proc.returncode}: {_tail(proc.stderr)}")
    return proc.stdout.decode("utf-8", "replace")


def interleaved(commands: dict[str, Callable[[], Run]], runs: int, warmup: int = 1) -> dict[str, list[Run]]:
    """Run each command `warmup` times untimed, then `runs` times, one of each in turn."""
    for _ in range(warmup):
        for run in commands.values():
            run()
    results: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, run in commands.items():
            results[name].append(run())
    return results


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def median_seconds(runs: list[Run]) -> float:
    return median([r.seconds for r in runs])


def peak_rss(runs: list[Run]) -> int:
    return max(r.maxrss for r in runs)


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    ours: str
    reference: str
    ratio: str
    target: str
    met: bool | None
    note: str = ""


@dataclass
class Report:
    config: Config
    targets: list[Row] = field(default_factory=list)
    context: list[tuple[str, str, str]] = field(default_factory=list)
    """(measure, value, note) rows without a target"""
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)

    def target(self, *args: object, **kwargs: object) -> None:
        row = Row(*args, **kwargs)  # type: ignore[arg-type]
        self.targets.append(row)
        print(f"  {row.measure}: {row.ours} vs {row.reference} -> {row.ratio} [{_met(row.met)}]", flush=True)

    def add(self, measure: str, value: str, note: str = "") -> None:
        self.context.append((measure, value, note))
        print(f"  {measure}: {value} {note}", flush=True)

    def fail(self, what: str, error: BaseException) -> None:
        message = f"{what}: {error}"
        self.failures.append(message)
        print(f"  NOT MEASURED {message}", flush=True)

    def unmeasured(self, measure: str, target: str, why: str) -> None:
        self.targets.append(Row(measure, "not measured", "", "", target, None, why))


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[met]


def _size_label(size: int) -> str:
    if size >= 1024 * MIB and size % (1024 * MIB) == 0:
        return f"{size // (1024 * MIB)} GiB"
    return f"{size // MIB} MiB"


def fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_rss(size: int) -> str:
    return f"{size / MIB:.0f} MiB"


def fmt_rate(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f} keys/s"


def fmt_tput(size: int, seconds: float) -> str:
    return f"{size / seconds / MIB:,.0f} MiB/s"


def render(report: Report) -> str:
    cfg = report.config
    lines = ["# anystore-cli benchmarks", ""]
    kind = "quick run (`python bench/run.py --quick`)" if cfg.quick else "full run (`python bench/run.py`)"
    lines.append(f"{report.machine.get('date', '')}, {kind}.")
    lines.append("")
    lines.append("## Machine")
    lines.append("")
    for name in ("CPU", "Cores", "RAM", "OS", "Load", "Python", "anystore-cli", "original", "servers", "rclone"):
        if name in report.machine:
            lines.append(f"- **{name}**: {report.machine[name]}")
    lines.append("")
    lines.append("## Targets (issue 6)")
    lines.append("")
    lines.append("| Measure | anystore-cli | Reference | Ratio | Target | Met |")
    lines.append("|---|---|---|---|---|---|")
    for row in report.targets:
        ours = row.ours if not row.note else f"{row.ours} ({row.note})"
        lines.append(f"| {row.measure} | {ours} | {row.reference} | {row.ratio} | {row.target} | {_met(row.met)} |")
    lines.append("")
    met = sum(1 for r in report.targets if r.met)
    missed = [r.measure for r in report.targets if r.met is False]
    unmeasured = [r.measure for r in report.targets if r.met is None]
    lines.append(f"{met} of {len(report.targets)} targets met.")
    if missed:
        lines.append(f"Missed: {'; '.join(missed)}.")
    if unmeasured:
        lines.append(f"Not measured: {'; '.join(unmeasured)}.")
    lines.append("")
    if report.context:
        lines.append("## Other measurements (no target)")
        lines.append("")
        lines.append("| Measure | Value | Note |")
        lines.append("|---|---|---|")
        for measure, value, note in report.context:
            lines.append(f"| {measure} | {value} | {note} |")
        lines.append("")
    lines.append("## How these were measured")
    lines.append("")
    lines.extend(f"- {note}" for note in report.notes)
    if report.failures:
        lines.append("")
        lines.append("## Not measured")
        lines.append("")
        lines.extend(f"- {failure}" for failure in report.failures)
    lines.append("")
    return "\n".join(lines)


# -- environment ---------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """The environment of every child: ours without ANYSTORE_* or AWS_* settings, no colour.

    PYTHONDONTWRITEBYTECODE is dropped: with it an editable install recompiles every module of
    anystore_cli from source on every start (70-90 ms here), while a pip-installed package, like
    the original in its venv, ships compiled bytecode. The warm-up runs write the bytecode.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYSTORE_", "AWS_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NO_COLOR"] = "1"
    return env


def new_cli(override: str | None = None) -> list[str]:
    if override:
        return override.split()
    candidate = Path(sys.executable).parent / "anystore"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("anystore")
    if not found:
        raise SystemExit("`anystore` is not installed in this environment: pip install -e '.[all,test]'")
    return [found]


def ensure_original() -> tuple[list[str], str]:
    """Create bench/.venv-original with anystore 0.3.0 from PyPI unless it is there already."""
    cli = ORIGINAL_VENV / "bin" / "anystore"
    python = ORIGINAL_VENV / "bin" / "python"
    if cli.exists():
        with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
            if sh([str(cli), "--version"], env=base_env()).strip() == ORIGINAL_VERSION:
                return [str(cli)], str(python)
    print(f"Creating {ORIGINAL_VENV} with {' '.join(ORIGINAL_REQUIREMENTS)} ...", flush=True)
    interpreter = shutil.which("python3.11") or sys.executable
    sh([interpreter, "-m", "venv", "--clear", str(ORIGINAL_VENV)])
    sh([str(python), "-m", "pip", "install", "--quiet", *ORIGINAL_REQUIREMENTS], env=base_env())
    version = sh([str(cli), "--version"], env=base_env()).strip()
    if version != ORIGINAL_VERSION:
        raise SystemExit(f"The original CLI reports version {version!r}, expected {ORIGINAL_VERSION}")
    return [str(cli)], str(python)


def machine_info(new: list[str], original: list[str]) -> dict[str, str]:
    info: dict[str, str] = {}
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info["CPU"] = cpu
    info["Cores"] = f"{os.cpu_count()} logical (affinity: {len(os.sched_getaffinity(0))})"
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                info["RAM"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    info["OS"] = platform.platform()
    with contextlib.suppress(OSError):
        info["Load"] = "load average at start " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    info["Python"] = f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    env = base_env()
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
        commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).strip()
        dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]).strip()
        version = sh([*new, "--version"], env=env).strip()
        info["anystore-cli"] = f"{version} (commit {commit}{', with local changes' if dirty else ''})"
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired, OSError):
        version = sh([*original, "--version"], env=env).strip()
        info["original"] = f"anystore {version} from PyPI in bench/.venv-original"
    servers = []
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired, OSError):
        for line in sh(["redis-cli", "INFO", "server"]).splitlines():
            if line.startswith("redis_version:"):
                servers.append(f"Redis {line.split(':', 1)[1].strip()}")
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired, OSError):
        servers.append("PostgreSQL " + psql("SHOW server_version").strip())
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
        # asked of a child: importing importlib.metadata here would raise every child's RSS floor
        moto = sh([sys.executable, "-c", "from importlib.metadata import version; print(version('moto'))"]).strip()
        servers.append(f"moto {moto} (S3, loopback)")
    info["servers"] = ", ".join(servers)
    rclone = shutil.which("rclone")
    info["rclone"] = rclone or "not installed: its rows are skipped"
    return info


def psql(sql: str) -> str:
    return sh(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", PG_DB, "-tA", "-c", sql])


def redis_delete(pattern: str) -> int:
    out = sh(["redis-cli", "EVAL", REDIS_DELETE_SCRIPT, "0", pattern])
    return int(out.strip() or 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """A moto S3 server on loopback in its own process (its memory is not ours)."""
    import urllib.request

    port = free_port()
    log = open(workdir / "moto.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=base_env(),
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"moto server did not start (see {workdir / 'moto.log'})") from exc
                time.sleep(0.2)
        request = urllib.request.Request(f"{endpoint}/{S3_BUCKET}", method="PUT")
        urllib.request.urlopen(request, timeout=30).close()
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def s3_size(endpoint: str, key: str) -> int:
    import urllib.request

    request = urllib.request.Request(f"{endpoint}/{S3_BUCKET}/{key}", method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers["Content-Length"])


# -- data ------------------------------------------------------------------------------------------


def make_big_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as handle:
        remaining = size
        while remaining > 0:
            handle.write(block[: min(MIB, remaining)])
            remaining -= MIB


def bulk_key(i: int) -> str:
    return f"bench/{i // 1000:03d}/{i:06d}.txt"


def bulk_value(i: int) -> str:
    return f"value {i}: the quick brown fox jumps over the lazy dog, key number {i:06d}"


def make_bulk_files(jsonl: Path, resp: Path, count: int, pipe_prefix: str) -> None:
    """The JSON lines `anystore dump` writes, and the same SETs in the Redis protocol."""
    with open(jsonl, "w") as lines, open(resp, "wb") as protocol:
        for i in range(count):
            key, value = bulk_key(i), bulk_value(i)
            lines.write(json.dumps({"key": key, "value": value}) + "\n")
            parts = [b"SET", f"{pipe_prefix}/{key}".encode(), value.encode()]
            protocol.write(f"*{len(parts)}\r\n".encode())
            for part in parts:
                protocol.write(b"$%d\r\n%s\r\n" % (len(part), part))


def to_trash(workdir: Path, folder: Path) -> None:
    """Move a folder out of the way at once; it is deleted with the temporary folder at the end.

    Deleting 100,000 files takes minutes on a disk mounted with `discard` (every unlink waits for
    the device), and it would slow down the measurements that follow it.
    """
    if folder.exists():
        trash = workdir / "trash"
        trash.mkdir(exist_ok=True)
        folder.rename(trash / f"{folder.name}-{secrets.token_hex(4)}")


def count_files(folder: Path) -> int:
    return sum(len([f for f in files if not f.startswith(".~anystore-")]) for _, _, files in os.walk(folder))


# -- sections ----------------------------------------------------------------------------------------


@dataclass
class Context:
    cfg: Config
    report: Report
    workdir: Path
    new: list[str]
    original: list[str]
    original_python: str
    run_id: str
    env: dict[str, str]
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    kept_local: Path | None = None
    kept_redis_prefix: str | None = None
    rss_method: str = ""
    bulk_rates: dict[str, float] = field(default_factory=dict)
    """keys/s of anystore-cli `load` per store"""


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


def section_memory(ctx: Context) -> None:
    """Peak memory of `get`/`put` of one big value (local and S3) and local streaming throughput."""
    cfg, report, env = ctx.cfg, ctx.report, ctx.env
    size = cfg.big_bytes
    label = cfg.big_label
    big = ctx.workdir / "big.bin"
    print(f"  writing a {label} value ...", flush=True)
    make_big_file(big, size)
    limit = 100 * MIB

    def rss_row(measure_name: str, ours: Run | None, ref: Run | None, why: str = "") -> None:
        target = "< 100 MiB peak RSS"
        if ours is None:
            report.unmeasured(measure_name, target, why or "command failed, see below")
            return
        reference = f"{fmt_rss(ref.maxrss)} (original)" if ref else "original not measured"
        ratio = f"{ours.maxrss / ref.maxrss:.3f}" if ref else ""
        report.target(measure_name, fmt_rss(ours.maxrss), reference, ratio, target, ours.maxrss < limit)

    def attempt(what: str, fn: Callable[[], Run]) -> Run | None:
        try:
            return fn()
        except BenchError as exc:
            report.fail(what, exc)
            return None

    # local
    new_dir, orig_dir = ctx.workdir / "mem-new", ctx.workdir / "mem-orig"
    print(f"  local put/get of {label} ...", flush=True)
    new_put = attempt(
        "local `put` (anystore-cli)",
        lambda: measure([*ctx.new, "--store", str(new_dir), "put", "big", "-i", str(big)], env=env),
    )
    if new_put and (new_dir / "big").stat().st_size != size:
        report.fail("local `put` (anystore-cli)", BenchError("stored value has the wrong size"))
        new_put = None
    orig_put = attempt(
        "local `put` (original)",
        lambda: measure([*ctx.original, "--store", str(orig_dir), "put", "big", "-i", str(big)], env=env),
    )
    rss_row(f"Memory: `put` of {label}, local folder", new_put, orig_put)

    new_get_cmd = [*ctx.new, "--store", str(new_dir), "get", "big"]
    new_get = None
    if new_put:
        new_get = attempt(
            "local `get` (anystore-cli)", lambda: measure(new_get_cmd, stdout=ctx.workdir / "big.out", env=env)
        )
        if new_get and (ctx.workdir / "big.out").stat().st_size != size:
            report.fail("local `get` (anystore-cli)", BenchError("output has the wrong size"))
            new_get = None
        (ctx.workdir / "big.out").unlink(missing_ok=True)
    orig_get = None
    if orig_put:
        orig_get = attempt(
            "local `get` (original)", lambda: measure([*ctx.original, "--store", str(orig_dir), "get", "big"], env=env)
        )
        shutil.rmtree(orig_dir, ignore_errors=True)

    # streaming: `get` to /dev/null against `cat` to /dev/null, same file, warm page cache
    stream_runs: dict[str, list[Run]] = {}
    if new_get:
        print(f"  streaming {label} to /dev/null x {cfg.stream_runs} ...", flush=True)
        stream_runs = interleaved(
            {
                "new get": lambda: measure(new_get_cmd, env=env, exact_rss=False),
                "cat": lambda: measure(["cat", str(new_dir / "big")], env=env, exact_rss=False),
            },
            cfg.stream_runs,
        )
    rss_row(f"Memory: `get` of {label}, local folder", new_get, orig_get)
    if stream_runs:
        ours, cat = median_seconds(stream_runs["new get"]), median_seconds(stream_runs["cat"])
        ratio = cat / ours
        report.target(
            f"Streaming: local `get` of {label} to /dev/null",
            fmt_tput(size, ours),
            f"{fmt_tput(size, cat)} (`cat`)",
            f"{ratio:.2f}",
            "≥ 0.5 of `cat` throughput",
            ratio >= 0.5,
            f"{fmt_s(ours)}",
        )
        report.add(f"Streaming: `cat` of {label} to /dev/null", fmt_s(cat), fmt_tput(size, cat))
    else:
        report.unmeasured(
            f"Streaming: local `get` of {label} to /dev/null", "≥ 0.5 of `cat` throughput", "`get` failed"
        )
    if orig_get:
        report.add(f"Original: local `get` of {label}", fmt_s(orig_get.seconds), f"peak RSS {fmt_rss(orig_get.maxrss)}")
    if orig_put:
        report.add(f"Original: local `put` of {label}", fmt_s(orig_put.seconds), f"peak RSS {fmt_rss(orig_put.maxrss)}")
    if new_put:
        report.add(
            f"anystore-cli: local `put` of {label}", fmt_s(new_put.seconds), f"{fmt_tput(size, new_put.seconds)}"
        )
    shutil.rmtree(new_dir, ignore_errors=True)

    # S3 on a moto server
    print(f"  S3 (moto) put/get of {label} ...", flush=True)
    try:
        with moto_server(ctx.workdir) as endpoint:
            s3_env = {**env, **AWS_ENV, "AWS_ENDPOINT_URL": endpoint}
            # moto assembles a multipart upload in memory when it completes: for 1 GiB that can take
            # longer than the CLI's default 15 s read timeout on a busy machine, and a retried
            # CompleteMultipartUpload then fails inside moto. A real S3 answers in time.
            new_store = [
                *ctx.new,
                "--store",
                f"s3://{S3_BUCKET}/new",
                "-b",
                f"endpoint_url={endpoint}",
                "-b",
                "read_timeout=600",
            ]
            orig_store = [*ctx.original, "--store", f"s3://{S3_BUCKET}/original"]
            s3_put = attempt(
                "S3 `put` (anystore-cli)", lambda: measure([*new_store, "put", "big", "-i", str(big)], env=s3_env)
            )
            if s3_put and s3_size(endpoint, "new/big") != size:
                report.fail("S3 `put` (anystore-cli)", BenchError("stored object has the wrong size"))
                s3_put = None
            s3_get = None
            if s3_put:
                s3_get = attempt(
                    "S3 `get` (anystore-cli)",
                    lambda: measure([*new_store, "get", "big"], stdout=ctx.workdir / "big.out", env=s3_env),
                )
                if s3_get and (ctx.workdir / "big.out").stat().st_size != size:
                    report.fail("S3 `get` (anystore-cli)", BenchError("output has the wrong size"))
                    s3_get = None
                (ctx.workdir / "big.out").unlink(missing_ok=True)
            orig_s3_put = attempt(
                "S3 `put` (original)", lambda: measure([*orig_store, "put", "big", "-i", str(big)], env=s3_env)
            )
            orig_s3_get = None
            if orig_s3_put:
                orig_s3_get = attempt("S3 `get` (original)", lambda: measure([*orig_store, "get", "big"], env=s3_env))
    except (BenchError, OSError) as exc:
        report.fail("S3 server", exc)
        s3_put = s3_get = orig_s3_put = orig_s3_get = None
    rss_row(f"Memory: `put` of {label}, S3", s3_put, orig_s3_put)
    rss_row(f"Memory: `get` of {label}, S3", s3_get, orig_s3_get)
    for who, put_run, get_run in (("anystore-cli", s3_put, s3_get), ("Original", orig_s3_put, orig_s3_get)):
        if put_run:
            report.add(f"{who}: S3 `put` of {label}", fmt_s(put_run.seconds), fmt_tput(size, put_run.seconds))
        if get_run:
            report.add(f"{who}: S3 `get` of {label}", fmt_s(get_run.seconds), fmt_tput(size, get_run.seconds))
    big.unlink(missing_ok=True)
    report.notes.append(
        f"Memory: peak RSS of one `put KEY -i FILE` and one "
        f"`get KEY` of a {label} value of random bytes, to a fresh local folder and to a moto S3 server "
        "on loopback (`-b endpoint_url=... -b read_timeout=600`: moto assembles a multipart upload "
        "slowly; the original finds moto through `AWS_ENDPOINT_URL`). The stored size is "
        f"checked. {ctx.rss_method}"
    )
    report.notes.append(
        f"Streaming: median of {cfg.stream_runs} interleaved runs of `anystore --store DIR get KEY > /dev/null` "
        "and `cat DIR/KEY > /dev/null` on the same file, in the page cache (both warmed up first); "
        "throughput is the value size over the whole process's wall time, start-up included."
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
    groups = {
        "local folder": (
            {
                "new": ([*ctx.new, "--store", str(local), "keys"], env),
                "native": (["find", str(local), "-type", "f"], env),
                "original": ([*ctx.original, "--store", str(local), "keys"], env),
            },
            3.0,
            "≤ 3× `find`",
            "`find DIR -type f`",
        ),
        "Redis": (
            {
                "new": ([*ctx.new, "--store", REDIS_URI, "-b", f"redis_prefix={prefix}", "keys"], env),
                "native": (["redis-cli", "--scan", "--pattern", f"{prefix}/*"], env),
                "original": ([*ctx.original, "--store", REDIS_URI, "keys"], original_redis_env),
            },
            2.0,
            "≤ 2× `redis-cli --scan`",
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
                if lines != n:
                    raise BenchError(f"`{_show(cmd)}` listed {lines:,} keys, expected {n:,}")
            except (BenchError, subprocess.TimeoutExpired) as exc:
                report.fail(f"`keys` on {store_name} ({who})", exc)
                continue
            usable[who] = lambda cmd=cmd, cmd_env=cmd_env: measure(cmd, env=cmd_env, exact_rss=False)
        # the original is slow and only context: one timed run after the check above
        original = usable.pop("original", None)
        results = interleaved(usable, cfg.listing_runs, warmup=0)
        if "new" in results and "native" in results:
            ours, native = median_seconds(results["new"]), median_seconds(results["native"])
            report.target(
                measure_name,
                fmt_s(ours),
                f"{fmt_s(native)} ({native_label})",
                f"{ours / native:.2f}×",
                target,
                ours / native <= limit,
                f"peak RSS {fmt_rss(rss['new'])}",
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
        f"Listing: median of {cfg.listing_runs} interleaved runs, stdout to /dev/null, over the {n:,} keys that "
        "`load` wrote in the bulk section (in folders of 1,000 keys on the local folder); every command's "
        "line count is checked first. Redis SCANs match `PREFIX/*` (what the store's keys are: anystore-cli "
        "also keeps a timestamp hash per key under `PREFIX\\0KEY`, so the database holds twice as many keys)."
    )


def section_sync(ctx: Context) -> None:
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


def section_dumpload(ctx: Context) -> None:
    """Peak memory of `dump` and `load` with three large values, and `dump | head -c 10`."""
    cfg, report, env = ctx.cfg, ctx.report, ctx.env
    size = 64 * MIB if cfg.quick else 200_000_000
    label = _size_label(size) if cfg.quick else "200 MB"
    store = ctx.workdir / "dumpload-store"
    store.mkdir()
    print(f"  writing three {label} values ...", flush=True)
    make_big_file(store / "binary", size)
    unit = 'a "quoted" line \\ with\ttabs, é and ✓\n'.encode()
    with open(store / "text", "wb") as handle:
        for _ in range(size // len(unit)):
            handle.write(unit)
    with open(store / "base64", "wb") as handle, open(store / "binary", "rb") as source:
        while chunk := source.read(3 * MIB):
            handle.write(base64.b64encode(chunk)[: size - handle.tell()])
            if handle.tell() >= size:
                break
    sizes = {path.name: path.stat().st_size for path in store.iterdir()}
    dump = ctx.workdir / "dumpload.jsonl"
    limit = 100 * MIB
    target = "< 100 MiB peak RSS"

    def rss_row(measure_name: str, run: Run | None) -> None:
        if run is None:
            report.unmeasured(measure_name, target, "command failed, see below")
            return
        report.target(measure_name, fmt_rss(run.maxrss), "", "", target, run.maxrss < limit, fmt_s(run.seconds))

    dumped: Run | None = None
    try:
        dumped = measure([*ctx.new, "--store", str(store), "dump"], stdout=dump, env=env)
        with open(dump, "rb") as handle:
            if sum(1 for _ in handle) != 3:
                raise BenchError("the dump does not hold three lines")
    except BenchError as exc:
        report.fail("`dump` of large values", exc)
        dumped = None
    rss_row(f"Memory: `dump` of three {label} values, local folder", dumped)
    loaded: Run | None = None
    if dumped:
        copy = ctx.workdir / "dumpload-copy"
        try:
            loaded = measure([*ctx.new, "--store", str(copy), "load", "-i", str(dump)], env=env)
            if {path.name: path.stat().st_size for path in copy.iterdir()} != sizes:
                raise BenchError("the loaded values have the wrong sizes")
        except BenchError as exc:
            report.fail("`load` of large values", exc)
            loaded = None
        shutil.rmtree(copy, ignore_errors=True)
    rss_row(f"Memory: `load` of three {label} values, local folder", loaded)
    dump.unlink(missing_ok=True)
    # `dump | head -c 10`: the command ends soon after its reader does, quietly
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*ctx.new, "--store", str(store), "dump"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(10)
    proc.stdout.close()
    try:
        status = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = proc.wait()
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read()
    note = f"exit {status}, {'no' if not stderr else 'some'} output on stderr, first bytes {head!r}"
    report.add(f"`dump` into `head -c 10` (closed after 10 bytes), three {label} values", fmt_s(seconds), note)
    if dumped:
        throughput = fmt_tput(3 * size, dumped.seconds)
        report.add(f"`dump` of three {label} values to a file", fmt_s(dumped.seconds), throughput)
    shutil.rmtree(store, ignore_errors=True)
    report.notes.append(
        f"Large values: a local folder with three {label} values (escape-rich UTF-8 text, random bytes, "
        "base64 text), `dump` to a file, that file `load`ed into a new folder (sizes checked), and "
        f"`dump` with its stdout closed after 10 bytes. {ctx.rss_method}"
    )


README = BENCH / "README.md"
README_START, README_END = "<!-- results: written by bench/run.py -->", "<!-- /results -->"


def update_readme(text: str) -> None:
    """Copy the results of a full run into bench/README.md, between its markers."""
    if not README.exists():
        return
    readme = README.read_text()
    if README_START not in readme or README_END not in readme:
        return
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = text.split("\n", 1)[1].replace("\n## ", "\n### ")  # below the README's own title
    README.write_text(f"{head}{README_START}\n{body.strip()}\n{README_END}{tail}")


# -- main --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.monotonic()
    new = new_cli(cfg.cli)
    # the sync section alone needs no original CLI (no venv from PyPI)
    original, original_python = ensure_original() if cfg.sections - {"sync"} else ([], "")
    report = Report(cfg)
    report.machine = machine_info(new, original)
    workdir = Path(tempfile.mkdtemp(prefix="anystore-bench-", dir=cfg.tmpdir))
    ctx = Context(cfg, report, workdir, new, original, original_python, secrets.token_hex(3), base_env())
    floor = measure(["true"]).maxrss
    if GNU_TIME:
        ctx.rss_method = (
            "Peak RSS is `ru_maxrss` of the command run under GNU time (`/usr/bin/time -f %M`), so it does "
            f"not inherit the benchmark process's own peak; `/bin/true` measures {fmt_rss(floor)} this way."
        )
    else:
        ctx.rss_method = (
            "Peak RSS is `ru_maxrss` of the child from `os.wait4`; GNU time is not installed, so every "
            f"figure includes the floor inherited from the benchmark process: {fmt_rss(floor)} for `/bin/true`."
        )
    print(f"anystore-cli benchmarks, {'quick' if cfg.quick else 'full'} run in {workdir}", flush=True)
    sections = {
        "startup": section_startup,
        "memory": section_memory,
        "bulk": section_bulk,
        "listing": section_listing,
        "sync": section_sync,
        "infos": section_infos,
        "dumpload": section_dumpload,
    }
    try:
        for name, section in sections.items():
            if name not in cfg.sections:
                continue
            print(f"[{name}] ({time.monotonic() - started:.0f} s)", flush=True)
            try:
                section(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
                report.fail(f"section {name}", exc)
                traceback.print_exc()
    finally:
        for cleanup in reversed(ctx.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        if cfg.keep:
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    report.notes.append(f"The whole run took {elapsed / 60:.1f} minutes.")
    text = render(report)
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    cfg.output.write_text(text)
    if cfg.output == BENCH / "RESULTS.md":
        update_readme(text)
    print()
    print(text)
    print(f"written to {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The runner shared by the benchmark sections: configuration and command-line options, running
and measuring processes, the report and its rendering, the servers' helpers, and the `Context`
every section gets.

This package imports only the standard library, so that its own memory stays small (a child
started by `vfork` inherits the parent's peak RSS as its floor).
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ORIGINAL_VENV = BENCH / ".venv-original"
INSTALLED_VENV = BENCH / ".venv-installed"
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
MARIADB_HOST, MARIADB_PORT, MARIADB_USER, MARIADB_DB = "127.0.0.1", 3306, "root", "test"
MARIADB_URI = f"mysql+pymysql://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{MARIADB_DB}"
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
    "local reply = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[1], 'COUNT', 20000) local n = 0 "
    "for _, key in ipairs(reply[2]) do redis.call('UNLINK', key) n = n + 1 end "
    "return {reply[1], n}"
)
"""One SCAN step of the names matching ARGV[1] from cursor ARGV[2], unlinked: `{cursor, count}`.
A step at a time, so that a store of millions of names never blocks the server (and the tests
that may share it) for seconds in one script"""


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
    installed: bool = False

    @property
    def big_label(self) -> str:
        return _size_label(self.big_bytes)


SECTIONS = ("startup", "memory", "bulk", "listing", "infos", "dumpload", "sync", "scale")
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
    parser.add_argument(
        "--installed",
        action="store_true",
        help="measure this tree installed as users install it (a wheel in bench/.venv-installed, rebuilt each run) "
        "instead of this Python's (often editable) install",
    )
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
        startup_runs=5 if args.quick else 20,
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
        installed=args.installed,
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
    kind = "quick run (`python -m bench --quick`)" if cfg.quick else "full run (`python -m bench`)"
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


def new_cli(override: str | None = None, installed: bool = False) -> list[str]:
    """The anystore-cli command to measure: `override`, the tree installed as users install it
    (`installed`), or the `anystore` of this Python's environment."""
    if override:
        return override.split()
    if installed:
        return ensure_installed()
    candidate = Path(sys.executable).parent / "anystore"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("anystore")
    if not found:
        raise SystemExit("`anystore` is not installed in this environment: pip install -e '.[all,test]'")
    return [found]


def ensure_installed() -> list[str]:
    """Install this tree into bench/.venv-installed as a user's `pip install` would (a built
    wheel, compiled bytecode, no editable-install import hook), afresh each run. The wheel is
    built from a copy of the tree, so no `build/` folder is left in it (nor reused from it)."""
    python = INSTALLED_VENV / "bin" / "python"
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "results"
    )
    with tempfile.TemporaryDirectory(prefix="anystore-bench-build-") as tmp:
        source = Path(tmp) / "anystore-cli"
        shutil.copytree(REPO, source, ignore=ignore)
        if not python.exists():
            print(f"Creating {INSTALLED_VENV} with anystore-cli[all] from {REPO} ...", flush=True)
            interpreter = shutil.which("python3.11") or sys.executable
            sh([interpreter, "-m", "venv", "--clear", str(INSTALLED_VENV)])
        else:
            print(f"Reinstalling anystore-cli from {REPO} into {INSTALLED_VENV} ...", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        sh([*pip, f"{source}[all]"], env=base_env())
        sh([*pip, "--force-reinstall", "--no-deps", str(source)], env=base_env())
    return [str(INSTALLED_VENV / "bin" / "anystore")]


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
        how = (
            "installed from the tree as a wheel in bench/.venv-installed"
            if str(INSTALLED_VENV) in new[0]
            else f"run as `{new[0]}`"
        )
        info["anystore-cli"] = f"{version} (commit {commit}{', with local changes' if dirty else ''}; {how})"
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
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired, OSError):
        servers.append("MariaDB " + mariadb("SELECT VERSION()").strip())
    with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
        # asked of a child: importing importlib.metadata here would raise every child's RSS floor
        moto = sh([sys.executable, "-c", "from importlib.metadata import version; print(version('moto'))"]).strip()
        servers.append(f"moto {moto} (S3, loopback)")
    info["servers"] = ", ".join(servers)
    rclone = shutil.which("rclone")
    if rclone:
        version = sh([rclone, "version"]).splitlines()[0].strip()
        info["rclone"] = f"{version} ({rclone}, from the distribution's packages)"
    else:
        info["rclone"] = "not installed: its rows are skipped"
    return info


def psql(sql: str) -> str:
    return sh(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", PG_DB, "-tA", "-c", sql])


def mariadb_command(sql: str, *options: str) -> list[str]:
    """The `mariadb` client running `sql` on the bench's database (no password)."""
    host, port, user = MARIADB_HOST, str(MARIADB_PORT), MARIADB_USER
    return ["mariadb", *options, "-h", host, "-P", port, "-u", user, "-N", "-B", MARIADB_DB, "-e", sql]


def mariadb(sql: str) -> str:
    return sh(mariadb_command(sql))


def redis_delete(pattern: str) -> int:
    cursor, deleted = "0", 0
    while True:
        out = sh(["redis-cli", "EVAL", REDIS_DELETE_SCRIPT, "0", pattern, cursor]).split()
        cursor, deleted = out[0], deleted + int(out[1])
        if cursor == "0":
            return deleted


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


def dump_line(key: str, value: str) -> str:
    """One line as `anystore dump` writes it: compact JSON (no spaces after `:` and `,`), which
    `load` reads on its fast path; a line spelt otherwise takes the field by field checks."""
    return json.dumps({"key": key, "value": value}, separators=(",", ":"), ensure_ascii=False) + "\n"


def make_bulk_files(jsonl: Path, resp: Path, count: int, pipe_prefix: str) -> None:
    """The JSON lines `anystore dump` writes, and the same SETs in the Redis protocol."""
    with open(jsonl, "w") as lines, open(resp, "wb") as protocol:
        for i in range(count):
            key, value = bulk_key(i), bulk_value(i)
            lines.write(dump_line(key, value))
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

"""Dump/load: peak memory of `dump` and `load` with large values."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time

from bench.runner import (
    MIB,
    TIMEOUT,
    BenchError,
    Context,
    Run,
    _size_label,
    fmt_rss,
    fmt_s,
    fmt_tput,
    make_big_file,
    measure,
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

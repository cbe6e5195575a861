"""Benchmarks for anystore-cli against the original anystore 0.3.0 CLI and native tools (issue 6).

One command, run from the repository's virtual environment:

    python -m bench            # full run (1 GiB values, 100,000 keys), writes bench/RESULTS.md
    python -m bench --quick    # smaller run (256 MiB, 20,000 keys), writes bench/results/RESULTS-quick.md

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

import contextlib
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench import bulk, dumpload, infos, listing, memory, scale, startup, sync
from bench.runner import (
    BENCH,
    GNU_TIME,
    Context,
    Report,
    base_env,
    ensure_original,
    fmt_rss,
    machine_info,
    measure,
    new_cli,
    parse_args,
    render,
    update_readme,
)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.monotonic()
    new = new_cli(cfg.cli, cfg.installed)
    # the sync and scale sections need no original CLI (no venv from PyPI)
    original, original_python = ensure_original() if cfg.sections - {"sync", "scale"} else ([], "")
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
        "startup": startup.section_startup,
        "memory": memory.section_memory,
        "bulk": bulk.section_bulk,
        "listing": listing.section_listing,
        "sync": sync.section_sync,
        "infos": infos.section_infos,
        "dumpload": dumpload.section_dumpload,
        "scale": scale.section_scale,
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

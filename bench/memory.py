"""Memory and streaming: peak RSS of `get`/`put` of one big value, streaming throughput."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from bench.runner import (
    AWS_ENV,
    MIB,
    S3_BUCKET,
    BenchError,
    Context,
    Run,
    fmt_rss,
    fmt_s,
    fmt_tput,
    interleaved,
    make_big_file,
    measure,
    median_seconds,
    moto_server,
    s3_size,
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
                log = ctx.workdir / "moto.log"
                seen = log.stat().st_size
                s3_get = attempt(
                    "S3 `get` (anystore-cli)",
                    lambda: measure([*new_store, "get", "big"], stdout=ctx.workdir / "big.out", env=s3_env),
                )
                if s3_get:
                    _s3_get_requests(ctx, log, seen, endpoint, s3_get)
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


def _s3_get_requests(ctx: Context, log: Path, seen: int, endpoint: str, run: Run) -> None:
    """The requests one S3 `get` of the big value made (moto logs each one) and its throughput,
    against `curl` of the same object."""
    size, label = ctx.cfg.big_bytes, ctx.cfg.big_label
    time.sleep(0.5)  # moto writes its log line after the answer
    with open(log, "rb") as handle:
        handle.seek(seen)
        # werkzeug's request lines, some in colour: `"GET /bucket/key HTTP/1.1" 200 -`
        lines = re.findall(rb'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/1\.1', handle.read())
    gets = sum(1 for method, path in lines if method == b"GET" and path == f"/{S3_BUCKET}/new/big".encode())
    try:
        curl = measure(["curl", "-sf", "-o", "/dev/null", f"{endpoint}/{S3_BUCKET}/new/big"], env=ctx.env)
        reference = f"{fmt_s(curl.seconds)}, {fmt_tput(size, curl.seconds)} (`curl` of the object, one GET)"
        ratio = f"{curl.seconds / run.seconds:.2f}× the rate"
    except BenchError as exc:
        ctx.report.fail("`curl` of the S3 object", exc)
        reference, ratio = "curl not measured", ""
    ctx.report.target(
        f"S3: requests of one `get` of {label}",
        f"{gets} GET of the object ({len(lines)} in all), {fmt_s(run.seconds)}, {fmt_tput(size, run.seconds)}",
        reference,
        ratio,
        "one GetObject",
        gets == 1,
        "requests counted in moto's request log; throughput over the whole process, start-up included",
    )

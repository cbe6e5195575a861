"""Sync: a second `mirror` of unchanged keys against listing both sides."""

from __future__ import annotations

from bench.runner import (
    AWS_ENV,
    S3_BUCKET,
    SYNC_KEYS,
    BenchError,
    Context,
    _tail,
    fmt_rss,
    fmt_s,
    interleaved,
    make_bulk_files,
    measure,
    median_seconds,
    moto_server,
    sh,
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

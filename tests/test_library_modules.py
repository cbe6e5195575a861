"""The library modules under the original anystore's names: io on file objects, util, serialize
(cloudpickle), worker, logging, mixins, types, cli, and the alias the original suite runs with."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path, PosixPath

import pytest

from anystore_cli.core import serialize, util
from anystore_cli.core.exceptions import DoesNotExist
from anystore_cli.core.io import (
    SmartHandler,
    logged_items,
    smart_open,
    smart_read,
    smart_stream,
    smart_stream_json,
    smart_write,
    smart_write_json,
)

REPO = Path(__file__).resolve().parent.parent


# io: file objects


def test_smart_read_reads_a_bytes_buffer():
    assert smart_read(io.BytesIO(b"x")) == b"x"
    assert smart_read(io.StringIO("text"), "r") == "text"


def test_smart_write_writes_into_the_buffer_and_creates_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    smart_write(buffer, b"x")
    smart_write(buffer, "y")
    assert buffer.getvalue() == b"xy"
    text = io.StringIO()
    smart_write(text, b"bytes into text")
    assert text.getvalue() == "bytes into text"
    assert os.listdir(tmp_path) == []


def test_smart_open_leaves_a_file_object_open():
    buffer = io.BytesIO(b"line 1\nline 2\n")
    with smart_open(buffer) as handle:
        assert handle is buffer
    assert not buffer.closed
    buffer.seek(0)
    assert list(smart_stream(buffer)) == [b"line 1\n", b"line 2\n"]


def test_a_file_object_is_no_uri():
    with pytest.raises(ValueError):
        util.ensure_uri(io.BytesIO())


def test_smart_write_appends_in_append_mode(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    smart_write(path, b"10\n", "ab")
    smart_write(path, b"99\n", "ab")
    assert path.read_bytes() == b"10\n99\n"


def test_smart_open_passes_compression_and_encoding_to_the_file(tmp_path):
    import gzip

    smart_write(tmp_path / "data.gz", b"hello", compression="gzip")
    assert gzip.decompress((tmp_path / "data.gz").read_bytes()) == b"hello"
    assert smart_read(tmp_path / "data.gz", compression="infer") == b"hello"
    smart_write(tmp_path / "latin", "é", mode="w", encoding="latin-1")
    assert (tmp_path / "latin").read_bytes() == b"\xe9"
    assert smart_read(tmp_path / "latin", "r", encoding="latin-1") == "é"


def test_smart_read_missing_file_raises_does_not_exist(tmp_path):
    with pytest.raises(DoesNotExist):
        smart_read(tmp_path / "missing")
    with pytest.raises(ValueError):
        smart_read("")


def test_json_lines_round_trip_through_a_file_and_a_buffer(tmp_path):
    items = [{"1": "a"}, {"foo": [1, 2]}]
    smart_write_json(tmp_path / "data.json", items)
    assert list(smart_stream_json(tmp_path / "data.json")) == items
    smart_write_json(tmp_path / "text.json", items, mode="w")
    assert list(smart_stream_json(tmp_path / "text.json", "r")) == items
    buffer = io.BytesIO()
    smart_write_json(buffer, items)
    assert buffer.getvalue() == b'{"1":"a"}\n{"foo":[1,2]}\n'


def test_smart_handler_reads_and_writes_atomically(tmp_path):
    path = tmp_path / "value"
    path.write_bytes(b"old\nsecond\n")
    with SmartHandler(path) as handle:
        assert handle.readline() == b"old\n"
    handler = SmartHandler(path, mode="wb")
    handler.open().write(b"new")
    assert path.read_bytes() == b"old\nsecond\n"  # not replaced before close
    handler.close()
    assert path.read_bytes() == b"new"
    with pytest.raises(RuntimeError), SmartHandler(path, mode="wb") as handle:
        handle.write(b"half")
        raise RuntimeError("failed write")
    assert path.read_bytes() == b"new"  # a failed write keeps the old value


def test_logged_items_yields_every_item_and_logs_a_total(caplog):
    with caplog.at_level(logging.INFO):
        assert list(logged_items(range(5), "Read", chunk_size=2, uri="/tmp/x")) == [0, 1, 2, 3, 4]
    assert any("Read 5 `Ints`: Done." in record.getMessage() for record in caplog.records)


def test_local_io_imports_neither_fsspec_nor_pydantic(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    code = (
        "import sys; from anystore_cli.core.io import smart_read, smart_write;"
        f"smart_write({str(tmp_path / 'g')!r}, b'y'); assert smart_read({str(path)!r}) == b'x';"
        "print(sorted(m for m in ('fsspec', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# util


def test_util_paths_and_names_of_any_uri():
    assert util.path_from_uri("/foo/bar") == PosixPath("/foo/bar")
    assert util.path_from_uri("file:///foo/bar") == PosixPath("/foo/bar")
    assert util.path_from_uri("https://foo/bar") == PosixPath("/foo/bar")
    assert util.path_from_uri("s3://foo") == PosixPath("/foo")
    assert util.name_from_uri("s3://foo/bar.txt") == "bar.txt"
    assert util.name_from_uri("foo/bar") == "bar"
    assert util.join_relpaths("/a/b/c/", "", "d/e/") == "a/b/c/d/e"
    assert util.join_uri("s3://foo/bar.pdf", "../baz.txt") == "s3://foo/baz.txt"
    assert util.get_extension("s3://b/Report.PDF") == "pdf"
    assert util.get_extension("foo/bar") is None
    assert util.get_extension(io.BytesIO()) is None


def test_util_keeps_percent_escapes():
    assert util.ensure_uri("s3://bucket/a%20b") == "s3://bucket/a%20b"


def test_util_checksums_are_the_originals():
    assert util.DEFAULT_HASH_ALGORITHM == "sha1"
    assert util.make_data_checksum("stable") == "4fbacc2fa0ffdbb11bf1ad6925b886ebd08dd15f"
    assert util.make_signature_key(1, "foo", bar="baz") == "c6b22da6bcf4bf7158ba600594cae404648acd41"
    assert util.make_checksum(io.BytesIO(b"stable")) == util.make_data_checksum(b"stable")


def test_util_clean_dict_and_rm_rf(tmp_path):
    assert util.clean_dict({1: 2, "a": None, "b": "", "c": {"d": ""}, "e": False}) == {"1": 2, "e": False}
    assert util.clean_dict("foo") == {}
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"x")
    util.rm_rf(tree)
    util.rm_rf(tmp_path / "missing")  # no error
    assert not tree.exists()


# serialize


def test_pickle_mode_round_trips_a_lambda_and_a_local_class():
    class Local:
        def __init__(self, value: int) -> None:
            self.value = value

    func = serialize.from_store(serialize.to_store(lambda x: x * 3, serialization_mode="pickle"), "pickle")
    assert func(2) == 6
    assert serialize.from_store(serialize.to_store(Local(4), serialization_mode="pickle"), "pickle").value == 4
    # auto mode pickles what JSON cannot hold, and unpickles values with a pickle header
    assert serialize.from_store(serialize.to_store(lambda x: x + 1))(1) == 2


def test_auto_mode_does_not_unpickle_when_pickle_is_disallowed(monkeypatch):
    data = serialize.to_store(lambda x: x)
    monkeypatch.setenv("ANYSTORE_ALLOW_PICKLE", "false")
    assert serialize.from_store(data) == data


def test_json_mode_refuses_a_function_with_a_type_error():
    with pytest.raises(TypeError):
        serialize.to_store(lambda x: x, serialization_mode="json")


# worker


def test_worker_handles_every_task_in_parallel():
    from anystore_cli.core.worker import Worker

    seen: list[int] = []
    threads: set[int] = set()
    lock = threading.Lock()

    def handle(task: int) -> None:
        time.sleep(0.05)
        with lock:
            seen.append(task)
            threads.add(threading.get_ident())

    status = Worker(threads=5, tasks=range(20), handle=handle, heartbeat=0).run()
    assert sorted(seen) == list(range(20))
    assert status.done == 20 and status.pending == 0 and status.errors == 0
    assert len(threads) > 1
    assert timedelta(0) < status.took < timedelta(seconds=1)


def test_worker_counts_errors_requeues_and_custom_fields():
    from anystore_cli.core.worker import Worker, WorkerStatus

    class Status(WorkerStatus):
        items: int = 0

    errors: list[int] = []

    class TestWorker(Worker):
        def handle_task(self, task: int) -> None:
            self.count(items=1)
            if task == 7:
                raise ValueError(task)
            if task >= 90 and task < 100:
                self.queue_task(task + 100)

    status = TestWorker(
        tasks=range(100), heartbeat=0, status_model=Status, handle_error=lambda task, exc: errors.append(task)
    ).run()
    assert isinstance(status, Status)
    assert status.done == 109 and status.errors == 1 and status.pending == 0
    assert status.items == 110
    assert errors == [7]


def test_worker_raises_a_task_error_without_hanging():
    from anystore_cli.core.worker import Worker

    def handle(task: int) -> None:
        if task == 3:
            raise ValueError("bad task")

    worker = Worker(threads=3, tasks=range(10_000), handle=handle, heartbeat=0)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        worker.run()
    assert isinstance(info.value.__cause__, ValueError)
    assert time.monotonic() - started < 10
    assert worker.status.exc and worker.status.running is False


def test_write_worker_writes_to_a_buffer_and_a_file(tmp_path):
    from anystore_cli.core.worker import Writer, WriteWorker

    class TestWorker(WriteWorker):
        def handle_task(self, task: int) -> None:
            if task in (10, 99):
                self.write(f"{task}\n".encode())

    buffer = io.BytesIO()
    assert TestWorker(Writer(buffer), tasks=range(100), threads=1, heartbeat=0).run().done == 100
    assert buffer.getvalue() == b"10\n99\n"
    TestWorker(Writer(tmp_path / "out"), tasks=range(100), threads=1, heartbeat=0).run()
    assert (tmp_path / "out").read_bytes() == b"10\n99\n"
    # a remote uri is written once, at the end
    remote = f"memory://writer-{os.getpid()}/out"
    writer = Writer(remote)
    assert not writer.can_write_parallel
    TestWorker(writer, tasks=range(100), heartbeat=0).run()
    assert smart_read(remote) in (b"10\n99\n", b"99\n10\n")


# logging, mixins, types, cli


def test_logger_takes_keyword_fields(capsys, monkeypatch):
    from anystore_cli.core.logging import configure_logging, get_logger

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        monkeypatch.setenv("ANYSTORE_LOG_JSON", "true")
        configure_logging()
        get_logger("anystore.test").bind(job="j1").info("Done.", uri="s3://b/k")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "Done." and record["severity"] == "INFO"
        assert record["uri"] == "s3://b/k" and record["job"] == "j1"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_mixin_model_loads_json_and_yaml_uris(tmp_path):
    from anystore_cli.core.mixins import BaseModel

    class Model(BaseModel):
        foo: str
        baz: str | None = None

    (tmp_path / "m.json").write_text('{"foo": "bar"}')
    (tmp_path / "m.yml").write_text("foo: bar\nbaz: ''\n")
    from_json = Model.from_json_uri(tmp_path / "m.json")
    from_yaml = Model.from_yaml_uri(tmp_path / "m.yml")
    assert from_json == from_yaml == Model(foo="bar", baz="")
    assert Model._from_uri(tmp_path / "m.yml").foo == "bar"
    assert Model.from_json_uri(tmp_path / "m.json", foo="other").foo == "other"
    assert len({from_json, from_yaml}) == 1


def test_types_cli_and_exceptions_have_the_original_names():
    import importlib

    from pydantic import BaseModel

    from anystore_cli.cli.app import app
    from anystore_cli.core.cli import cli

    # by module name: the package's own `import types` (the standard library's) shadows the attribute
    types = importlib.import_module("anystore_cli.core.types")
    from anystore_cli.core.exceptions import DoesNotExist, ReadOnlyError  # noqa: F401

    assert types.Model == type[BaseModel]
    assert types.SDict.__origin__ is dict
    assert cli is app


def test_alias_maps_anystore_modules_to_the_core():
    code = (
        "import original_suite; original_suite.install_alias();"
        "import anystore, anystore.util, anystore.io, anystore_cli.core, anystore_cli.core.util;"
        "from anystore.io import smart_read;"
        "assert anystore is anystore_cli.core and anystore.util is anystore_cli.core.util;"
        "assert smart_read is anystore_cli.core.io.smart_read;"
        "import importlib.util; assert importlib.util.find_spec('anystore.nope') is None; print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.stdout.strip() == "ok", out.stderr


def test_submodules_are_attributes_of_the_package_after_types_loads():
    code = (
        "import sys, anystore_cli.core as core, anystore_cli.core.types, anystore_cli.core.util;"
        "assert core.util is sys.modules['anystore_cli.core.util']; print('ok')"
    )
    out = subprocess.run([sys.executable, "-W", "error::ImportWarning", "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr

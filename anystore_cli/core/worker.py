"""A threaded task worker (anystore's `worker` module): one producer, many consumers.

Example:
    ```python
    from anystore_cli.core.worker import Worker

    class Download(Worker):
        def get_tasks(self):
            yield from urls

        def handle_task(self, url):
            fetch(url)

    status = Download(threads=8).run()
    print(status.done, status.errors, status.took)
    ```
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from functools import cached_property
from queue import Queue
from typing import Any

from pydantic import BaseModel

from anystore_cli.config.settings import Settings
from anystore_cli.core.logging import get_logger
from anystore_cli.store.io import is_file_object, smart_open, smart_write
from anystore_cli.util.uri import ensure_uri

log = get_logger(__name__)

__all__ = ["RaisingThread", "WorkerStatus", "Worker", "Writer", "WriteWorker"]

_STOP = object()


class RaisingThread(threading.Thread):
    """A thread whose `join()` raises the exception its target raised."""

    def run(self) -> None:
        """Run the target, keeping its exception for `join()`."""
        self._exc: BaseException | None = None
        try:
            super().run()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self._exc = exc

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread; raise what its target raised."""
        super().join(timeout=timeout)
        exc = getattr(self, "_exc", None)
        if exc is not None:
            self._exc = None
            raise exc


class WorkerStatus(BaseModel):
    """Counters and times of a worker's run (subclass it to count more fields)."""

    started: datetime | None = None
    stopped: datetime | None = None
    last_updated: datetime | None = None
    pending: int = 0
    done: int = 0
    errors: int = 0
    running: bool = False
    exc: str | None = None
    took: timedelta = timedelta()

    def touch(self) -> None:
        """Set `last_updated` to now."""
        self.last_updated = datetime.now()

    def start(self) -> None:
        """Mark the run as started."""
        self.running = True
        self.started = datetime.now()

    def stop(self, exc: Exception | None = None) -> None:
        """Mark the run as stopped (with the exception that stopped it) and set `took`."""
        self.running = False
        self.stopped = datetime.now()
        if exc is not None:
            self.exc = str(exc)
        if self.started and self.stopped:
            self.took = self.stopped - self.started


def _default_threads() -> int:
    return Settings().worker_threads or os.cpu_count() or 1


class Worker:
    """Run `handle_task` on every task of `get_tasks` in a pool of threads.

    Tasks come from the `tasks` iterable or an overridden `get_tasks()`; each is handled by
    `handle` or an overridden `handle_task()`. A task that raises counts as an error and goes to
    `exception()` (`handle_error`, or re-raised: the run stops and raises). A handler may queue
    more tasks with `queue_task()`. `run()` returns the final status.

    Args:
        threads: Threads, one of them the producer (default `ANYSTORE_WORKER_THREADS`, else
            the number of CPUs); at least one consumer runs
        tasks: Iterable of tasks
        handle: Function called with each task
        handle_error: Function called with a task and the exception it raised
        job_id: Name in the log lines
        heartbeat: Log the status every this many seconds (0: never)
        status_model: `WorkerStatus` subclass for the status
    """

    def __init__(
        self,
        threads: int | None = None,
        tasks: Iterable[Any] | None = None,
        handle: Callable[[Any], Any] | None = None,
        handle_error: Callable[[Any, Exception], Any] | None = None,
        job_id: str | None = None,
        heartbeat: int | None = None,
        status_model: type[WorkerStatus] | None = WorkerStatus,
    ) -> None:
        self.consumer_threads = max(2, threads or _default_threads()) - 1
        self.queue: Queue[Any] = Queue()
        self.consumers: list[RaisingThread] = []
        self.tasks = tasks
        self.handle = handle
        self.handle_error = handle_error
        self.lock = threading.RLock()
        self.counter: Counter[str] = Counter()
        self.status_model = status_model or WorkerStatus
        self.status = self.status_model()
        self.job_id = job_id or f"{self.__class__.__name__}-{time.time()}"
        self.heartbeat = Settings().worker_heartbeat if heartbeat is None else heartbeat
        self._produced = False
        self._stopped = False
        self._beating = threading.Event()

    def get_tasks(self) -> Iterator[Any]:
        """Yield the tasks (default: from `tasks`)."""
        if self.tasks is None:
            raise NotImplementedError("Give `tasks` or override `get_tasks()`")
        yield from self.tasks

    def handle_task(self, task: Any) -> Any:
        """Handle one task (default: `handle(task)`)."""
        if self.handle is None:
            raise NotImplementedError("Give `handle` or override `handle_task()`")
        return self.handle(task)

    def exception(self, task: Any, e: Exception) -> None:
        """Deal with a task's exception (default: `handle_error`, else raise it)."""
        if self.handle_error is None:
            if task is not None:
                raise Exception(task) from e
            raise e
        self.handle_error(task, e)

    def queue_task(self, task: Any) -> None:
        """Add a task to the queue (also from a handler, during the run)."""
        self.count(pending=1)
        self.queue.put(task)

    def produce(self) -> None:
        """Queue all tasks of `get_tasks()`."""
        try:
            for task in self.get_tasks():
                if self._stopped:
                    break
                self.queue_task(task)
        finally:
            with self.lock:
                self._produced = True
                self._stop_when_idle()

    def _stop_when_idle(self) -> None:
        # called with the lock held: all produced and nothing pending means nothing more comes
        if self._produced and self.counter["pending"] < 1:
            self._stop_consumers()

    def _stop_consumers(self) -> None:
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
        for _ in range(self.consumer_threads):
            self.queue.put(_STOP)

    def consume(self) -> None:
        """Handle queued tasks until the worker stops."""
        while True:
            task = self.queue.get()
            if task is _STOP:
                return
            try:
                self.handle_task(task)
            except Exception as exc:  # noqa: BLE001 - counted, then handed to exception()
                self.count(pending=-1, errors=1)
                try:
                    self.exception(task, exc)
                except BaseException:
                    self._stop_consumers()  # the run fails: the others stop too
                    raise
            else:
                self.count(pending=-1, done=1)
            with self.lock:
                self._stop_when_idle()

    def count(self, **kwargs: int) -> None:
        """Add to the counters (`pending`, `done`, `errors` or a field of the status model)."""
        with self.lock:
            self.status.touch()
            self.counter.update(**kwargs)

    def beat(self) -> None:
        """Log the status every `heartbeat` seconds while the worker runs."""
        while not self._beating.wait(self.heartbeat):
            self.log_status()

    def log_status(self) -> None:
        """Log the current status."""
        status = self.get_status()
        log.info(f"[{self.job_id}] 💚 ", **status.model_dump(mode="json"))

    def get_status(self) -> WorkerStatus:
        """The status with the current counters."""
        with self.lock:
            return self.status_model(**{**self.status.model_dump(), **self.counter})

    def exit(self, exc: Exception | None = None, status: int | None = 0) -> None:
        """Leave the program (after Ctrl-C), logging `exc`; in debug mode raise it instead."""
        if exc is not None:
            log.error(f"{exc.__class__.__name__}: `{exc}`", exception=exc)
            if Settings().debug:
                raise exc
        sys.exit(status)

    def done(self) -> None:
        """Called once at the end of the run (override it, e.g. to flush output)."""

    def run(self) -> WorkerStatus:
        """Run all tasks and return the final status.

        Raises:
            Exception: What a task raised, when `exception()` raises it
        """
        self._produced = self._stopped = False
        self.consumers = []
        self._beating.clear()
        heartbeat: threading.Thread | None = None
        try:
            log.info(f"Using `{self.consumer_threads}` consumer threads.")
            self.status.start()
            if self.heartbeat and self.heartbeat > 0:
                heartbeat = threading.Thread(target=self.beat, daemon=True)
                heartbeat.start()
            for _ in range(self.consumer_threads):
                consumer = RaisingThread(target=self.consume, daemon=True)
                consumer.start()
                self.consumers.append(consumer)
            producer = RaisingThread(target=self.produce, daemon=True)
            producer.start()
            errors: list[Exception] = []
            for consumer in self.consumers:
                try:
                    consumer.join()
                except Exception as exc:  # noqa: BLE001 - raised below, after the others stopped
                    errors.append(exc)
            self._stopped = True
            producer.join()
            if errors:
                self.exception(None, errors[0])
        except KeyboardInterrupt:
            self._stop_consumers()
            self._finish(heartbeat)
            self.exit()
        except Exception as exc:
            self.status.stop(exc=exc)
            raise
        finally:
            self._finish(heartbeat)
        return self.get_status()

    def _finish(self, heartbeat: threading.Thread | None) -> None:
        if self._beating.is_set():
            return
        self._beating.set()
        if heartbeat is not None:
            heartbeat.join()
        if self.status.running:
            self.status.stop()
        self.log_status()
        self.done()


class Writer:
    """Write the output of a worker's tasks to a uri.

    A local file, stdout or a file object is written to as results come (appending); any other
    uri gets the results buffered and written once by `flush()`.

    Args:
        uri: Path, uri, `-` or an open file object
    """

    def __init__(self, uri: Any) -> None:
        self.uri = uri
        self.buffer: list[Any] = []

    @cached_property
    def can_write_parallel(self) -> bool:
        """Whether results can be appended as they come."""
        if is_file_object(self.uri):
            return True
        uri = ensure_uri(self.uri)
        return uri == "-" or uri.startswith("file://")

    def write(self, data: Any) -> None:
        """Write (or buffer) one result."""
        if self.can_write_parallel:
            smart_write(self.uri, data, "ab")
        else:
            self.buffer.append(data)

    def flush(self) -> None:
        """Write the buffered results (remote uris)."""
        if not self.can_write_parallel and self.buffer:
            mode = "w" if all(isinstance(item, str) for item in self.buffer) else "wb"
            with smart_open(self.uri, mode) as handle:
                for item in self.buffer:
                    handle.write(item.encode() if isinstance(item, str) and mode == "wb" else item)
            self.buffer = []


class WriteWorker(Worker):
    """A `Worker` whose tasks write results through a `Writer` (`self.write(value)`).

    Args:
        writer: Where results go
        *args: `Worker` arguments
        **kwargs: `Worker` arguments
    """

    def __init__(self, writer: Writer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writer = writer

    def write(self, value: Any) -> None:
        """Write one result (one at a time)."""
        with self.lock:
            self.writer.write(value)

    def done(self) -> None:
        """Flush the writer."""
        self.writer.flush()
        log.info("Write results.", uri=str(self.writer.uri))

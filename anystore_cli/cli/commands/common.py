"""What every command shares: the global state (which store, which options), key checks,
output targets and the value modes.

Nothing here imports a backend: the store is built on first use, through the core's
`get_store`, so `io` or `settings` never pay for it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Generator
from enum import Enum
from typing import IO, Annotated, Any

import typer

from anystore_cli.cli.output.text import readable_text, uri_text  # noqa: F401  (command modules import them from here)
from anystore_cli.cli.output.values import dump_json, load_json, render_value  # noqa: F401
from anystore_cli.config.settings import MAX_TTL
from anystore_cli.errors import (
    AlreadyExists,
    AnystoreError,
    DoesNotExist,
    InvalidData,
    InvalidKey,
    InvalidUri,
    ReadOnlyError,
    UsageProblem,
)
from anystore_cli.store.options import is_secret_name, mask_secrets, register_secrets  # noqa: F401 - imported from here
from anystore_cli.util.keys import ensure_relative_key
from anystore_cli.util.uri import mask_uri

DEFAULT_STORE = ".anystore"


class ClosedStream:
    """Stands for stdin or stdout when the shell closed it (`<&-`, `>&-`): reading or writing
    is a usage error naming the stream, instead of an AttributeError on None."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _closed(self, *args: Any, **kwargs: Any) -> Any:
        redirection = "<&-" if self.name == "stdin" else ">&-"
        raise UsageProblem(f"{self.name} is closed ({redirection}); give it a file or a pipe")

    read = read1 = readline = readinto = write = writelines = fileno = __iter__ = _closed

    @property
    def buffer(self) -> ClosedStream:
        """Itself: the binary layer is as closed as the text one."""
        return self

    def isatty(self) -> bool:
        """Never a terminal."""
        return False

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""


def guard_closed_streams() -> None:
    """Replace a closed stdin/stdout (None in `sys`) by a `ClosedStream`, and keep descriptors
    0 and 1 taken (by /dev/null) so no file the command opens lands on them."""
    for fd, name in ((0, "stdin"), (1, "stdout")):
        if getattr(sys, name) is not None:
            continue
        setattr(sys, name, ClosedStream(name))
        try:
            os.fstat(fd)
        except OSError:
            try:
                devnull = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
                if devnull != fd:
                    os.dup2(devnull, fd)
                    os.close(devnull)
            except OSError:
                pass


class Mode(str, Enum):
    """How a command turns stored bytes into output (and input into stored bytes)."""

    raw = "raw"
    json = "json"
    auto = "auto"
    pickle = "pickle"


class LineMode(str, Enum):
    """How `stream` emits lines."""

    raw = "raw"
    json = "json"


_REFUSALS: dict[type, str] = {
    DoesNotExist: "does not exist",
    AlreadyExists: "already exists",
    ReadOnlyError: "refused, the store is readonly",
}
"""How `State.reading` and `.writing` word a backend's error about one key"""


class State:
    """The global options of one invocation, and the store they name (built on first use)."""

    def __init__(
        self,
        store_uri: str | None = None,
        store_from_command_line: bool = False,
        config_uri: str | None = None,
        config_format: str = "yaml",
        backend_config: dict[str, Any] | None = None,
        readonly: bool = False,
        quiet: bool = False,
        verbose: bool = False,
        debug: bool = False,
    ) -> None:
        self.store_uri = store_uri
        self.store_from_command_line = store_from_command_line
        self.config_uri = config_uri
        self.config_format = config_format
        self.backend_config = backend_config or {}
        self.readonly = readonly
        self.quiet = quiet
        self.verbose = verbose
        self.debug = debug
        self._store: Any = None
        register_secrets({"uri": store_uri, "config": config_uri, "backend_config": self.backend_config})
        self.names: dict[str, str] = {}
        """A store's uri as the backend normalised it -> as the user gave it (both masked)."""

    @property
    def uses_config(self) -> bool:
        """The store comes from a YAML/JSON definition (not overridden by `--store`)."""
        return self.config_uri is not None and not self.store_from_command_line

    @property
    def label(self) -> str:
        """How errors name the store: as the user gave it (password masked)."""
        if self.uses_config:
            return f"config {mask_uri(self.config_uri)}"
        return mask_uri(self.store_uri or DEFAULT_STORE)

    def store_options(self) -> tuple[str, dict[str, Any]]:
        """The uri and keyword options the store is built from, without building it."""
        options: dict[str, Any] = {"backend_config": dict(self.backend_config) or None}
        if self.readonly:
            options["readonly"] = True
        if self.uses_config:
            from anystore_cli.store.model import StoreModel

            load = StoreModel.from_json_uri if self.config_format == "json" else StoreModel.from_yaml_uri
            try:
                model = load(self.config_uri, **options)
            except DoesNotExist:
                # a config file that is not there is a bad option value, not a missing key
                raise InvalidUri(f"Store config `{mask_uri(self.config_uri)}` does not exist") from None
            except Exception as exc:
                if type(exc).__module__.split(".")[0] != "yaml":
                    raise
                text = " ".join(str(exc).split())
                raise InvalidData(f"Invalid YAML in store config `{mask_uri(self.config_uri)}`: {text}") from None
            fields = model.model_dump()
            register_secrets(fields)
            uri = fields.pop("uri")
            options = {k: v for k, v in fields.items() if v is not None or k == "backend_config"}
            return uri, options
        return self.store_uri or DEFAULT_STORE, options

    def store(self) -> Any:
        """The store of this invocation."""
        if self._store is None:
            from anystore_cli.store.registry import get_store

            uri, options = self.store_options()
            check_backend_options(uri, self.backend_config, "-b")
            self._store = get_store(uri, **options)
            self.names[mask_uri(self._store.uri)] = self.label
        return self._store

    def is_main_store(self, uri: str | None) -> bool:
        """`uri` is omitted or names the store of this invocation (the one `-s` and `-b` configure)."""
        if uri is None:
            return True
        from anystore_cli.util.uri import ensure_uri

        main, _ = self.store_options() if self.uses_config else (self.store_uri or DEFAULT_STORE, None)
        try:
            return ensure_uri(uri) == ensure_uri(main)
        except Exception:  # noqa: BLE001 - an unparsable uri fails later, naming itself
            return False

    def open_store(
        self, uri: str | None, writing: bool = False, config: dict[str, Any] | None = None, option: str = ""
    ) -> Any:
        """Another store (`mirror -i/-o`); `writing` honours `--readonly`.

        No uri (or the uri of `--store`) means the store of this invocation, configured by `-b`
        and then `config`; any other uri is configured by `config` (the side's own
        `--input-config`/`--output-config`) alone.
        """
        if self.is_main_store(uri) and not config:
            return self.store()
        from anystore_cli.store.registry import get_store

        if self.is_main_store(uri):
            uri, options = self.store_options()
            check_backend_options(uri, self.backend_config, "-b")
            options["backend_config"] = {**(options.get("backend_config") or {}), **(config or {})}
        else:
            options = {"backend_config": dict(config or {}) or None}
        check_backend_options(uri, config or {}, option)
        if self.readonly:
            options["readonly"] = True
        store = get_store(uri, **options)
        self.names.setdefault(mask_uri(store.uri), mask_uri(uri))
        return store

    def open_sides(
        self,
        input: str | None,
        output: str | None,
        input_config: list[str] | None,
        output_config: list[str] | None,
        writing: bool = False,
    ) -> tuple[Any, Any]:
        """The source and target stores of `mirror`/`check`: `-b` where a side is the store,
        each side's own `--input-config`/`--output-config`; `writing` opens the target to write."""
        self.check_backend_config_used(input, output)
        source_config = split_backend_config(input_config, "'--input-config'")
        target_config = split_backend_config(output_config, "'--output-config'")
        source = self.open_store(input, config=source_config, option="--input-config")
        target = self.open_store(output, writing=writing, config=target_config, option="--output-config")
        return source, target

    def check_backend_config_used(self, *uris: str | None) -> None:
        """`-b` configures the `--store`: refuse it when a command here uses none of `uris` as that store."""
        if self.backend_config and not any(self.is_main_store(uri) for uri in uris):
            names = ", ".join(f"`{name}`" for name in self.backend_config)
            raise UsageProblem(
                f"-b {names} configures the store (-s `{self.label}`), which this command does not use here; "
                "configure the other uris with --input-config / --output-config KEY=VALUE"
            )

    def key(self, key: str) -> str:
        """Check a key given on the command line (status 2 when it is empty, absolute or escapes)."""
        try:
            return ensure_relative_key(key)
        except InvalidKey as exc:
            raise InvalidKey(f"{exc} (store `{self.label}`)") from None

    def reading(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Report a missing `key` by its name and the store's, whatever the backend said."""
        return self._naming(key, DoesNotExist)

    def writing(self, key: str) -> contextlib.AbstractContextManager[None]:
        """Name `key` and the store when a write is refused (exists already, read-only store)."""
        return self._naming(key, AlreadyExists, ReadOnlyError)

    @contextlib.contextmanager
    def _naming(self, key: str, *kinds: type[AnystoreError]) -> Generator[None, None, None]:
        """Raise an error of one of `kinds` again as `Key KEY in store LABEL: ...`, keeping the
        store the backend named; a read-only refusal that names the key already passes as it is."""
        try:
            yield
        except kinds as exc:
            if isinstance(exc, ReadOnlyError) and exc.key == key:
                raise
            kind = next(kind for kind in kinds if isinstance(exc, kind))
            text = f"Key `{key}` in store `{self.label}`: {_REFUSALS[kind]}"
            raise kind(text, key=key, store=exc.store) from None

    def note(self, text: str) -> None:
        """A summary line on stderr, unless `--quiet`."""
        if not self.quiet:
            from anystore_cli.cli.console import message

            message(text)

    def detail(self, text: str) -> None:
        """A detail line on stderr, only with `--verbose`."""
        if self.verbose and not self.quiet:
            from anystore_cli.cli.console import message

            message(text)


def ttl_option(help: str) -> Any:
    """The `--ttl SECONDS` option (whole seconds, at most MAX_TTL) with its `help` text."""
    return typer.Option("--ttl", metavar="SECONDS", min=0, max=MAX_TTL, help=help)


InputConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input-config",
        "--from-config",
        metavar="KEY=VALUE",
        help="Option of the -i uri, repeatable, as -b is for the store (e.g. endpoint_url=..., table=kv).",
    ),
]
OutputConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--output-config",
        "--to-config",
        metavar="KEY=VALUE",
        help="Option of the -o uri, repeatable, as -b is for the store (e.g. endpoint_url=..., table=kv).",
    ),
]


def get_state(ctx: typer.Context) -> State:
    """The `State` the global options left on the context."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


@contextlib.contextmanager
def open_output(
    target: str | None, config: dict[str, Any] | None = None, option: str = "--output-config"
) -> Generator[IO[bytes], None, None]:
    """A binary output: stdout for None or `-`, else any path or uri (written atomically where local).

    `config` holds the uri's own options (fsspec storage options, `--output-config`); every
    error of opening, writing or closing it names the uri.
    """
    if target in (None, "-"):
        if config:
            raise UsageProblem(f"{option} applies to a uri, not to stdout")
        out = sys.stdout.buffer
        yield out
        out.flush()
        return
    with _named_io(target, "wb", config, option) as handle:
        yield handle


@contextlib.contextmanager
def open_input(
    source: str | None, config: dict[str, Any] | None = None, option: str = "--input-config"
) -> Generator[IO[bytes], None, None]:
    """A binary input: stdin for None or `-`, else any path or uri (`config`: its options, as
    for `open_output`); every error of opening or reading it names the uri."""
    if source in (None, "-"):
        if config:
            raise UsageProblem(f"{option} applies to a uri, not to stdin")
        yield sys.stdin.buffer
        return
    with _named_io(source, "rb", config, option) as handle:
        yield handle


_NAMED = "_anystore_named"
"""Attribute set on an exception that already names its uri, or that the caller's code raised."""


def name_error(exc: BaseException, uri: str) -> BaseException | None:
    """`exc` made into an error of the same exit status whose message names `uri` (masked);
    None when it should pass unchanged (interrupts, broken pipes, already named)."""
    import errno

    if not isinstance(exc, Exception) or getattr(exc, _NAMED, False):
        return None
    if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
        return None
    name = mask_uri(uri)
    text = " ".join(str(exc).split()) or type(exc).__name__
    if f"`{name}`" in text:
        return None
    from anystore_cli.errors import AnystoreError, StoreError

    if isinstance(exc, AnystoreError):
        try:
            named: BaseException = type(exc)(f"`{name}`: {text}")
        except TypeError:  # pragma: no cover - an error type with another signature
            named = StoreError(f"`{name}`: {text}")
    else:
        if not isinstance(exc, OSError) or not str(exc):
            text = f"{type(exc).__name__}: {text}"
        named = StoreError(f"`{name}`: {text}")
    setattr(named, _NAMED, True)
    return named


class _NamedHandle:
    """A file handle whose read and write errors name its uri."""

    def __init__(self, handle: Any, uri: str) -> None:
        self._handle = handle
        self._uri = uri

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._handle, method)(*args)
        except Exception as exc:
            named = name_error(exc, self._uri)
            if named is None:
                raise
            raise named from exc

    def read(self, *args: Any) -> Any:
        return self._call("read", *args)

    def read1(self, *args: Any) -> Any:
        return self._call("read1" if hasattr(self._handle, "read1") else "read", *args)

    def readinto(self, *args: Any) -> Any:
        return self._call("readinto", *args)

    def write(self, *args: Any) -> Any:
        return self._call("write", *args)

    def flush(self) -> Any:
        return self._call("flush")

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def readline(self, *args: Any) -> Any:
        return self._call("readline", *args)

    def __getattr__(self, name: str) -> Any:  # fileno, tell, seek, size, ...
        return getattr(self._handle, name)


@contextlib.contextmanager
def _named_io(uri: str, mode: str, config: dict[str, Any] | None, option: str) -> Generator[Any, None, None]:
    from anystore_cli.store.io import smart_open
    from anystore_cli.store.registry import check_bucket
    from anystore_cli.util.uri import ensure_uri

    check_backend_options(uri, config or {}, option)
    if config:  # typed as for a store: `retries=1` is the number 1, `key=0123` stays text
        from anystore_cli.store.options import typed_config

        config = typed_config(uri, config, option)
    check_bucket(ensure_uri(uri))
    try:
        with smart_open(uri, mode, **(config or {})) as handle:
            try:
                yield _NamedHandle(handle, uri)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    setattr(exc, _NAMED, True)  # the caller's own error (or the other side's)
                raise
    except Exception as exc:
        named = name_error(exc, uri)
        if named is None:
            raise
        raise named from exc


def encode_argument(value: str) -> bytes:
    """The bytes of a command-line argument as the shell passed them (undecodable bytes kept)."""
    return os.fsencode(value)


def split_backend_config(items: list[str] | None, option: str = "'-b' / '--backend-config'") -> dict[str, Any]:
    """Parse repeated `KEY=VALUE` options; VALUE stays text as typed (the backend's declared
    option types it: `table=2024.10` is the table `2024.10`, `timeout=5` the number 5)."""
    config: dict[str, Any] = {}
    if not items:
        return config
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"`{item}` is not KEY=VALUE", param_hint=option)
        config[name.strip()] = value
    return config


def check_backend_options(uri: str, config: dict[str, Any], option: str) -> None:
    """Refuse (status 2) options in `config` that the backend of `uri` does not know, naming
    the option and the ones it knows (`option`: how the user gave them, e.g. `-b`)."""
    if not config:
        return
    from anystore_cli.store.registry import unknown_backend_options

    unknown, known, backend = unknown_backend_options(uri, config)
    if unknown:
        names = ", ".join(f"`{name}`" for name in unknown)
        offer = ", ".join(known) if known else "none"
        raise UsageProblem(f"{option} {names}: not an option of the {backend} store `{mask_uri(uri)}` (known: {offer})")

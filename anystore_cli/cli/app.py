"""The `anystore` command line: global options, lazy command registry, and exit statuses.

Command modules (`anystore_cli.cli.commands.*`) are imported only when their command runs, so a
`get` never pays for `load` or `mirror`. Every error leaves through `EXIT_STATUS`, the one
table mapping exception types to exit statuses (in `anystore_cli.errors`; docs/exit-status.md
lists them).
"""

import errno
import importlib
import os
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from anystore_cli import __version__
from anystore_cli.errors import (  # noqa: F401  (names of this module since the start)
    DEFAULT_EXIT_STATUS,
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_OK,
    EXIT_STATUS,
    EXIT_STORE,
    EXIT_USAGE,
    exit_status,
)

PROG = "anystore"

COMMANDS: dict[str, str] = {
    "get": "values",
    "put": "values",
    "keys": "keys",
    "stream": "values",
    "checksum": "meta",
    "touch": "values",
    "info": "meta",
    "pop": "values",
    "rm": "keys",
    "exists": "keys",
    "dump": "transfer",
    "load": "transfer",
    "mirror": "mirror",
    "serve": "serve",
    "check": "mirror",
    "io": "transfer",
    "lock": "lock",
    "settings": "meta",
}
"""Command name -> module of `anystore_cli.cli.commands` that defines it (imported on use)."""

_debug = False


def debug_enabled() -> bool:
    """`--debug` was given, or `ANYSTORE_DEBUG` is set true."""
    if _debug:
        return True
    value = os.environ.get("ANYSTORE_DEBUG", "").strip().lower()
    return value in ("1", "true", "yes", "on", "y", "t")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def is_broken_pipe(exc: BaseException) -> bool:
    """The reader of our stdout went away (`anystore keys | head -1`)."""
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)


_TEMPORARY_RENAME = re.compile(r"""(['"])[^'"]*\.~anystore-[^'"]*\1 -> """)
_TEMPORARY_FILE = re.compile(r"""(['"])[^'"]*\.~anystore-[^'"]*\1""")


def humane(text: str, names: dict[str, str] | None = None) -> str:
    """An error text as the user should read it: stores named as they were given (`names`:
    normalised uri -> given uri), and no temporary file names of the store."""
    for normalised, given in (names or {}).items():
        if normalised != given:
            text = text.replace(f"`{normalised}`", f"`{given}`")
    text = _TEMPORARY_RENAME.sub("", text)
    return _TEMPORARY_FILE.sub("(a temporary file of the store)", text)


def report(exc: BaseException, names: dict[str, str] | None = None) -> int:
    """Print one error line for `exc` (a traceback with `--debug`) and return its exit status;
    `names` renames stores in it (see `humane`)."""
    from anystore_cli.util.uri import mask_uri

    status = exit_status(exc)
    if debug_enabled():
        import traceback

        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        sys.stderr.write(mask_uri("".join(lines)))
    if isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    elif type(exc).__module__.startswith("anystore_cli") or isinstance(exc, OSError):
        text = str(exc) or type(exc).__name__
        if type(exc).__module__.startswith("anystore_cli"):  # our own lines: a key's control characters shown
            text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    else:
        text = f"{type(exc).__name__}: {exc}"
        if not debug_enabled():
            text += " (run with --debug for the traceback)"
    text = humane(mask_uri(" ".join(text.split())), names)
    from anystore_cli.cli.console import stderr_is_terminal, terminal_safe

    if stderr_is_terminal():
        text = terminal_safe(text)
    sys.stderr.write(f"{PROG}: error: {text}\n")
    sys.stderr.flush()
    return status


def _is_control_flow(exc: BaseException) -> bool:
    """Typer/click exceptions that carry their own exit (help, usage errors, `typer.Exit`)."""
    if isinstance(exc, (typer.Exit, typer.Abort, SystemExit, GeneratorExit)):
        return True
    return _is_click_exception(exc)


def _is_click_exception(exc: BaseException) -> bool:
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


class LazyGroup(TyperGroup):
    """The command group: commands are built from their module when first asked for."""

    _built: dict[str, Any] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        """All command names, in the order of the command reference."""
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """Import the module of `cmd_name` and build that one command (None if unknown)."""
        command = self._built.get(cmd_name)
        if command is not None:
            return command
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"anystore_cli.cli.commands.{module_name}")
        for info in module.app.registered_commands:
            name = info.name or typer.main.get_command_name(info.callback.__name__)
            if name == cmd_name:
                command = typer.main.get_command_from_info(
                    info, pretty_exceptions_short=True, rich_markup_mode=module.app.rich_markup_mode
                )
                _note_clashes(command, option_table(self))
                self._built[cmd_name] = command
                return command
        return None  # pragma: no cover - COMMANDS names a command its module lacks

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse the global options, wherever they were given (see `hoist_global_options`);
        shell completion parses through here too, so `get -s STORE <Tab>` lists STORE's keys."""
        return super().parse_args(ctx, hoist_global_options(args, self, strict=not ctx.resilient_parsing))

    def invoke(self, ctx: Any) -> Any:
        """Run the command; map any error to its exit status with one line on stderr."""
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()
            return result
        except BaseException as exc:
            if is_broken_pipe(exc):
                _silence_stdout()
                raise typer.Exit(EXIT_OK) from None
            if _is_control_flow(exc):
                raise
            state = getattr(ctx.find_root(), "obj", None)
            raise typer.Exit(report(exc, getattr(state, "names", None))) from None


def _note_clashes(command: Any, globals_: dict[str, bool]) -> None:
    """Say in a command's help which of its options are spelled as a global option: after the
    command name that spelling is the command's own (see `hoist_global_options`)."""
    clashes = [
        spelling for spelling in option_table(command) if spelling in globals_ and spelling not in ("-h", "--help")
    ]
    if clashes:
        names = ", ".join(clashes)
        command.help = (
            f"{command.help or ''}\n\nAfter `{command.name}`, {names} is this command's own option: "
            "give the global option of that name before the command."
        )


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"{__version__}\n")
        raise typer.Exit(EXIT_OK)


app = typer.Typer(
    name=PROG,
    cls=LazyGroup,
    help="Script key-value stores from the shell: local folders, S3 and fsspec, zip, Redis and SQL.\n\n"
    "Values are bytes: what goes in with `put` comes out of `get` byte for byte.\n\n"
    "The options below are global: give them before or after the command (`anystore keys -s STORE`), "
    "never after `--`. After the command, an option of the command spelled like a global one is the "
    "command's.",
    epilog="\b\nExample: anystore -s s3://bucket/prefix get data.json > data.json\n\n"
    "Exit status: 0 done, 1 no (missing key, exists, checksum differs), 2 usage, 3 store failed, 130 interrupted.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_callback(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "-s",
            "--store",
            envvar="ANYSTORE_URI",
            metavar="URI",
            help="Store base uri: a path, file://, s3://, memory://, redis://, sqlite:///... [default: .anystore]",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="URI",
            help="Load the store definition from a YAML or JSON file (env ANYSTORE_YAML_URI / ANYSTORE_JSON_URI).",
        ),
    ] = None,
    backend_config: Annotated[
        list[str] | None,
        typer.Option(
            "-b",
            "--backend-config",
            metavar="KEY=VALUE",
            help="Backend option, repeatable; VALUE is JSON when it parses (env ANYSTORE_BACKEND_CONFIG__KEY).",
        ),
    ] = None,
    readonly: Annotated[
        bool, typer.Option("--readonly", envvar="ANYSTORE_READONLY", help="Refuse every write.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Less on stderr: no summaries.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="More on stderr: one line per key.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="ANYSTORE_DEBUG", help="Full tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Script key-value stores from the shell."""
    global _debug
    _debug = debug
    from anystore_cli.cli.commands.common import State, UsageProblem, split_backend_config

    if store is not None and not store.strip():
        raise UsageProblem("--store is empty; give a path or uri (the default is `.anystore`)")
    if config is not None and not config.strip():
        raise UsageProblem("--config is empty; give the path or uri of a YAML or JSON file")

    # precedence: --store on the command line, then --config, then ANYSTORE_YAML_URI / ANYSTORE_JSON_URI,
    # then ANYSTORE_URI, then the default folder
    source = ctx.get_parameter_source("store") if store is not None else None
    from_command_line = source is not None and source.name == "COMMANDLINE"
    config_format = "yaml"
    if config is not None:
        config_format = "json" if config.lower().split("?", 1)[0].endswith(".json") else "yaml"
    elif os.environ.get("ANYSTORE_YAML_URI"):
        config = os.environ["ANYSTORE_YAML_URI"]
    elif os.environ.get("ANYSTORE_JSON_URI"):
        config, config_format = os.environ["ANYSTORE_JSON_URI"], "json"
    ctx.obj = State(
        store_uri=store,
        store_from_command_line=from_command_line,
        config_uri=config,
        config_format=config_format,
        backend_config=split_backend_config(backend_config),
        readonly=readonly,
        quiet=quiet,
        verbose=verbose,
        debug=debug,
    )


def run(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default `sys.argv[1:]`) and return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:  # the fast path: no command tree to build
        sys.stdout.write(f"{__version__}\n")
        return EXIT_OK
    if "_ANYSTORE_COMPLETE" in os.environ:  # the shell asks for completions
        from anystore_cli.cli.completion import prepare_completion

        prepare_completion()
    if "--show-completion" in args or "--install-completion" in args:
        from anystore_cli.cli.completion import use_own_scripts

        use_own_scripts()
    _exit_cleanly_on_sigterm()
    from anystore_cli.cli.commands.common import guard_closed_streams
    from anystore_cli.cli.console import install_full_stdout

    guard_closed_streams()
    install_full_stdout()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except BaseException as exc:
        if is_broken_pipe(exc):
            _silence_stdout()
            return EXIT_OK
        if isinstance(exc, SystemExit):
            code = exc.code
            return code if isinstance(code, int) else (0 if code is None else EXIT_NO)
        if isinstance(exc, typer.Exit):
            return exc.exit_code
        if isinstance(exc, typer.Abort):
            sys.stderr.write(f"{PROG}: error: aborted\n")
            return EXIT_NO
        if _is_click_exception(exc):
            return _usage_error(exc)
        return report(exc)
    return result if isinstance(result, int) else EXIT_OK


PASSTHROUGH_ARGUMENTS: dict[str, int] = {"lock": 1}
"""Commands whose arguments after the first N are another program's command line (`lock NAME
COMMAND...`): nothing from there on is taken as a global option, `--` or not."""


def option_table(command: Any) -> dict[str, bool]:
    """Every spelling of `command`'s options (its help option included) -> whether it takes a value."""
    table: dict[str, bool] = {}
    for param in command.params:
        if param.param_type_name != "option":
            continue
        takes_value = not (param.is_flag or param.count)
        for spelling in (*param.opts, *param.secondary_opts):
            table[spelling] = takes_value
    for spelling in command.context_settings.get("help_option_names", ("--help",)):
        table.setdefault(spelling, False)
    table.setdefault("--help", False)
    return table


def _spelling(token: str) -> tuple[str, bool]:
    """The option name a token starts with, and whether the token carries its value (`--x=v`, `-xv`)."""
    if token.startswith("--"):
        name, equals, _value = token.partition("=")
        return name, bool(equals)
    return token[:2], len(token) > 2


def _is_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1


def _command_index(args: list[str], globals_: dict[str, bool]) -> int | None:
    """Where the command name is in `args`: the first word that is no global option or its value."""
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            return None
        if not _is_option(token):
            return index
        name, attached = _spelling(token)
        index += 2 if globals_.get(name) and not attached else 1
    return None


def hoist_global_options(args: list[str], group: Any, strict: bool = False) -> list[str]:
    """`args` with the global options given after the command moved before it, where click reads them.

    Users give flags anywhere, as rclone and aws take them (`anystore keys -s STORE`, `anystore
    mirror -i A -o B -v`). After the command name each word is read with the command's own
    options first: an option of the command stays (with its value, even one that looks like a
    flag: `keys --prefix -v`), so where a command has an option spelled as a global one (a clash)
    the command's wins. A global option moves with its value. Nothing after `--` moves, nor
    anything from the program's command line of `lock NAME COMMAND...`. A global option that
    takes a value and ends the line stays where it is, or (`strict`) is a usage error.
    """
    globals_ = option_table(group)
    index = _command_index(args, globals_)
    if index is None:
        return args
    name = args[index]
    command = group.get_command(None, name) if name in COMMANDS else None
    if command is None:
        return args
    own = option_table(command)
    passthrough_after = PASSTHROUGH_ARGUMENTS.get(name)
    hoisted: list[str] = []
    kept: list[str] = []
    positionals = 0
    rest = iter(args[index + 1 :])
    for token in rest:
        if token == "--":
            kept += [token, *rest]
            break
        if not _is_option(token):
            positionals += 1
            if passthrough_after is not None and positionals > passthrough_after:
                kept += [token, *rest]
                break
            kept.append(token)
            continue
        spelling, attached = _spelling(token)
        if spelling in own:
            target = kept
            takes_value = own[spelling]
        elif spelling in globals_:
            target = hoisted
            takes_value = globals_[spelling]
            if attached and not takes_value and not _only_global_flags(token, globals_, own):
                target = kept  # `-vx`: not all global flags; the parser names what is wrong
        else:
            kept.append(token)
            continue
        if takes_value and not attached:
            value = next(rest, None)
            if value is None:
                if strict and target is hoisted:
                    from typer._click.exceptions import BadOptionUsage

                    raise BadOptionUsage(spelling, f"Option '{spelling}' requires an argument.")
                kept.append(token)
                continue
            target += [token, value]
            continue
        target.append(token)
    if not hoisted:
        return args
    return [*args[:index], *hoisted, name, *kept]


def _only_global_flags(token: str, globals_: dict[str, bool], own: dict[str, bool]) -> bool:
    """`-vq`: bundled short flags that are all global flags and none the command's own."""
    if token.startswith("--"):
        return False
    flags = [f"-{char}" for char in token[1:]]
    return all(globals_.get(flag) is False and flag not in own for flag in flags)


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (timeout(1), cron, systemd) unwinds like Ctrl-C: a write in progress is discarded
    (the old value stays, the temporary file goes) and the status is 143."""
    import signal

    try:
        signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread (embedded use): leave the default
        pass


def _usage_error(exc: Any) -> int:
    """Print a usage error in one line (the whole help when no command was given); status 2."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        sys.stderr.write(f"{exc.format_message()}\n")
        return EXIT_USAGE
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    option = getattr(exc, "option_name", None)
    if type(exc).__name__ == "NoSuchOption" and option and ctx is not None:
        hint = _where_option_goes(option, ctx) or hint
    from anystore_cli.util.uri import mask_uri

    text = mask_uri(" ".join(str(exc.format_message()).split()))
    sys.stderr.write(f"{PROG}: error: {text}{hint}\n")
    return EXIT_USAGE


def _where_option_goes(option: str, ctx: Any) -> str | None:
    """A hint for an option given where it is not understood: the commands it belongs to, or,
    inside `lock`'s COMMAND, that COMMAND goes after `--`."""
    command = ctx.command
    group = ctx.find_root().command
    if command is not group and command.name in PASSTHROUGH_ARGUMENTS:
        return (
            f" (the program {PROG} {command.name} runs and its options go after `--`: see '{ctx.command_path} --help')"
        )
    if option in option_table(group):
        return None
    owners = [name for name in COMMANDS if option in option_table(group.get_command(ctx, name))]
    if not owners:
        return None
    listed = ", ".join(f"`{PROG} {name}`" for name in owners)
    where = "after the command" if command is group else "with one of those commands"
    return f" ({option} is an option of {listed}: give it {where})"


def main() -> None:
    """Console script entry point: run and exit with the command's status."""
    status = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError):  # stdout failed (full disk): report it, unless already failing
        status = status or report(sys.exc_info()[1] or OSError("stdout failed"))
        _silence_stdout()
    sys.exit(status)

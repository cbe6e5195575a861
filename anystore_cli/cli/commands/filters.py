"""The key filters of `keys`, `rm`, `dump`, `mirror` and `check`: repeatable `--include GLOB` /
`--exclude GLOB` and `--shard I/N` (besides `--prefix`, `--exclude-prefix` and `--glob`).

Include and exclude rules are tried in the order they appear on the command line and the first
that matches decides, as rclone's filter rules are; the parser gives each option's values apart,
so `FilterCommand` records the order of the options as it parses them.
"""

import contextlib
import functools
import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from anystore_cli.cli.commands.common import UsageProblem
from anystore_cli.cli.options import ExcludePrefixOption, PrefixOption

_ORDER = "anystore.filter_order"
_SHARD = re.compile(r"[0-9]+/[0-9]+")
_RULES = ("include", "exclude")
_SINGLE = ("prefix", "exclude_prefix", "glob", "shard")

GlobOption = Annotated[
    str | None,
    typer.Option(
        "--glob",
        metavar="G",
        help="Only keys matching the path glob G. `*` and `?` stay within one /-separated segment, "
        "`**` crosses them: `*.json` finds `a.json`, not `d/a.json` (that is `**/*.json`). "
        "With --prefix P, G is matched below P (`P/G`).",
    ),
]
IncludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        metavar="GLOB",
        help="Keep keys matching GLOB; repeatable. Rules apply in order, the first match decides; "
        "given any --include, keys no rule matches are left out. A GLOB without a leading / also "
        "matches at any depth (`*.json`).",
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        metavar="GLOB",
        help="Leave out keys matching GLOB; repeatable, in order with --include (`*.tmp`, `cache/`).",
    ),
]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Only the keys of shard I (0-based) of N, by a stable hash of the key: "
        "N runs with shards 0..N-1 cover every key once.",
    ),
]


class FilterCommand(TyperCommand):
    """A command that remembers the command-line order of its `--include` and `--exclude` options."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse as usual, noting the order in which include and exclude rules were given.

        A single-valued filter given twice is refused: click would keep the last one, and
        `rm --exclude-prefix a/ --exclude-prefix b/` would then delete what `a/` was meant to keep.
        """
        order: list[Any] = []
        with contextlib.suppress(Exception):  # a bad command line fails in the real parse below
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
            ctx.meta[_ORDER] = [param.name for param in order if param.name in _RULES]
        seen: set[str] = set()
        for param in order:
            if param.name in _SINGLE and param.name in seen:
                flag = max(param.opts, key=len)
                raise click.UsageError(f"{flag} given more than once: it takes one value", ctx=ctx)
            seen.add(param.name)
        return super().parse_args(ctx, args)


def key_filters(
    ctx: typer.Context, include: list[str] | None, exclude: list[str] | None, shard: str | None
) -> dict[str, Any]:
    """The `filters` (ordered `+ GLOB` / `- GLOB` rules) and `shard` keyword arguments of the
    core's listing and mirror functions, from the command's options.

    Raises:
        UsageProblem: If the shard is not I/N with 0 <= I < N
    """
    from anystore_cli.errors import InvalidData
    from anystore_cli.util.keys import parse_shard

    # `int()` would also read `３`, `١` or `1_0`, and the library takes `''` for no shard
    if shard is not None and not _SHARD.fullmatch(shard):
        raise UsageProblem(f"--shard: Invalid shard `{shard}`: expected I/N in ASCII digits, as 0/4")
    try:
        parsed = parse_shard(shard)
    except InvalidData as exc:
        raise UsageProblem(f"--shard: {exc}") from None
    includes, excludes = list(include or ()), list(exclude or ())
    order = ctx.meta.get(_ORDER)
    if order is None or order.count("include") != len(includes) or order.count("exclude") != len(excludes):
        order = ["include"] * len(includes) + ["exclude"] * len(excludes)  # rclone's order for its flags
    rules = []
    for name in order:
        rules.append(f"+ {includes.pop(0)}" if name == "include" else f"- {excludes.pop(0)}")
    return {"filters": rules or None, "shard": parsed}


def with_key_filters(after: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the key filter options, in their place in `--help`: right after its
    parameter `after`, as `--prefix`, `--exclude-prefix`, `--glob`, `--include`, `--exclude`,
    `--shard`. Use it with `cls=FilterCommand`.

    The command takes them parsed, as one keyword argument `selection`: the `glob`, `prefix`,
    `exclude_prefix`, `filters` and `shard` keyword arguments of the listing and mirror functions.
    """
    options = {
        "prefix": PrefixOption,
        "exclude_prefix": ExcludePrefixOption,
        "glob": GlobOption,
        "include": IncludeOption,
        "exclude": ExcludeOption,
        "shard": ShardOption,
    }

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        params = [param for param in signature.parameters.values() if param.name != "selection"]
        at = [param.name for param in params].index(after) + 1
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        added = [inspect.Parameter(name, kind, default=None, annotation=hint) for name, hint in options.items()]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in options}
            rules = key_filters(kwargs["ctx"], given["include"], given["exclude"], given["shard"])
            chosen = {name: given[name] for name in ("glob", "prefix", "exclude_prefix")}
            return func(selection={**chosen, **rules}, **kwargs)

        # typer reads the options from the signature and its (evaluated) annotations
        shown = signature.replace(parameters=params[:at] + added + params[at:])
        command.__signature__ = shown  # type: ignore[attr-defined]
        command.__annotations__ = {param.name: param.annotation for param in shown.parameters.values()}
        command.__annotations__["return"] = signature.return_annotation
        return command

    return decorate

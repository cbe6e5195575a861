"""Shell completion of keys: the keys of the store named on the command line or in the environment.

Typer and click drive the completion protocol (`_ANYSTORE_COMPLETE=complete_bash` with
`COMP_WORDS`/`COMP_CWORD`, `complete_zsh`/`complete_fish` with `_TYPER_COMPLETE_ARGS`); the
KEY arguments of the commands name `complete_key` as their `autocompletion` callback.

Completion must never get in the way of typing: the listing runs in a daemon thread that is
abandoned after `COMPLETION_TIMEOUT` seconds, every error is swallowed (an unreachable or slow
store completes to nothing), nothing is written to stderr, and nothing is created (a missing
local folder or SQLite file is not made by asking for its keys).

This module imports only the standard library; the store is built when a key is completed.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from typing import Any

COMPLETION_TIMEOUT = 1.5
"""Seconds from the start of the completion request (`prepare_completion`) after which a store
that has not listed its keys yet is given up on: the shell gets nothing."""

MAX_KEYS = 100
"""At most this many keys are offered."""

_started: float | None = None


def prepare_completion() -> None:
    """Set up a process that answers the shell's completion request.

    Help texts go out on one line each (Typer wraps them at the terminal width otherwise, and a
    wrapped line would be offered as a candidate by fish), and no warnings or log records reach
    stderr (they would garble the prompt).
    """
    import logging
    import warnings

    global _started
    _started = time.monotonic()
    os.environ.setdefault("TERMINAL_WIDTH", "100000")
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)


def _state_for(ctx: Any) -> Any:
    """The `State` of the global options, rebuilt from the parsed (not invoked) root context.

    During completion click parses the command line but runs no callbacks, so the root
    context holds the global options' values (`-s`, `--config`, `-b`, environment) in
    `params`, and the app's own callback turns them into a `State` with its precedence rules.
    """
    from anystore_cli.cli.commands.common import State

    root = ctx.find_root()
    if isinstance(root.obj, State):
        return root.obj
    from anystore_cli.cli.app import main_callback

    main_callback(root, **root.params)
    return root.obj


def _would_create(uri: str) -> bool:
    """Whether listing `uri` would create something that is not there (a folder, a SQLite file)."""
    if "://" not in uri:
        return not os.path.exists(uri)
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme == "file":
        return not os.path.exists(rest)
    if scheme.startswith("sqlite"):
        path = rest[1:] if rest.startswith("/") else rest
        path = path.split("?", 1)[0]
        return bool(path) and path != ":memory:" and not os.path.exists(path)
    return False


def list_keys(ctx: Any, incomplete: str, limit: int = MAX_KEYS) -> list[str]:
    """The keys of the invocation's store starting with `incomplete`, at most `limit` (may raise)."""
    state = _state_for(ctx)
    uri, _options = state.store_options()
    if _would_create(str(uri)):
        return []
    state.readonly = True
    store = state.store()
    found = store.iterate_keys(prefix=incomplete or None)
    # a key with a newline cannot be offered through the line-based protocols
    return [key for key in itertools.islice(found, limit) if "\n" not in key]


def complete_key(ctx: Any, incomplete: str) -> list[str]:
    """Autocompletion callback for KEY arguments: the store's keys starting with `incomplete`.

    Returns at most `MAX_KEYS` keys, sorted, and nothing at all when the store is unreachable,
    fails, or takes longer than `COMPLETION_TIMEOUT` seconds.
    """
    if _started is None:  # not through `anystore_cli.cli.app.run`
        prepare_completion()
    result: list[str] = []

    def work() -> None:
        try:
            result.extend(list_keys(ctx, incomplete))
        except BaseException:  # noqa: BLE001 - completion completes to nothing, whatever happened
            result.clear()

    worker = threading.Thread(target=work, name="anystore-complete", daemon=True)
    worker.start()
    started = _started if _started is not None else time.monotonic()
    worker.join(max(0.1, COMPLETION_TIMEOUT - (time.monotonic() - started)))
    if worker.is_alive():
        _exit_promptly()
        return []
    return sorted(result)


def _exit_promptly() -> None:
    """Leave without the interpreter's clean-up once the answer is out: a listing stuck in a
    hung store (an import, a socket, an event loop thread) can hold a normal exit up for long."""
    import atexit

    # the status the completion protocol ends with when there are no candidates: fish's
    # "is-args" check exits 1 (so it completes file names instead), everything else 0
    status = 1 if os.environ.get("_TYPER_COMPLETE_FISH_ACTION") == "is-args" else 0

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)

    atexit.register(leave)  # registered last, so it runs first


BASH_SCRIPT = r"""
%(complete_func)s() {
    local IFS=$'\n'
    # bash splits the line at the characters of COMP_WORDBREAKS (`:` and `=` among them), so
    # `-s sqlite:///kv.db get lo` would reach anystore as `-s sqlite : ///kv.db ...`: join the
    # pieces that no blank separates again, from the line up to the cursor
    local line=${COMP_LINE:0:COMP_POINT} words=() word rest gap i pos=0
    [[ -z $line ]] && words=("${COMP_WORDS[@]:0:COMP_CWORD+1}")  # called without a line: as given
    for (( i = 0; ${#line} && i <= COMP_CWORD; i++ )); do
        rest=${line:pos}
        word=${rest#"${rest%%%%[![:space:]]*}"}
        gap=$(( ${#rest} - ${#word} ))
        (( i < COMP_CWORD )) && word=${COMP_WORDS[i]}
        if (( i > 0 && gap == 0 && ${#words[@]} > 0 )); then
            words[${#words[@]}-1]+=$word
        else
            words+=("$word")
        fi
        pos=$(( pos + gap + ${#word} ))
    done
    local cur=${words[${#words[@]}-1]} candidates candidate quote="" head=""
    candidates=( $( env COMP_WORDS="${words[*]}" COMP_CWORD=$(( ${#words[@]} - 1 )) \
                    %(autocomplete_var)s=complete_bash $1 2>/dev/null ) )
    # bash replaces only the text after the last word break of the current word: leave out
    # what comes before it (as __ltrim_colon_completions does)
    local breaks=${COMP_WORDBREAKS//[^:=]/}
    if [[ -n $breaks && $cur == *[$breaks]* ]]; then
        head=${cur%%"${cur##*[$breaks]}"}
    fi
    [[ $cur == [\'\"]* ]] && quote=${cur:0:1}
    COMPREPLY=()
    for candidate in "${candidates[@]}"; do
        if [[ -n $quote ]]; then
            # inside an opened quote: the quote stays, the text goes as it is
            COMPREPLY+=("${quote}${candidate}")
        else
            # spaces, glob and other shell characters escaped, so the key arrives as it is
            printf -v candidate '%%q' "$candidate"
            COMPREPLY+=("${candidate#"$head"}")
        fi
    done
    return 0
}

complete -o default -F %(complete_func)s %(prog_name)s
"""
"""The bash completion script (a template for Typer's `--show-completion`/`--install-completion`
and `completions/anystore.bash`): Typer's, plus uris with `:` and `=` and quoting of keys."""


def use_own_scripts() -> None:
    """Make Typer print and install `BASH_SCRIPT` for bash."""
    from typer import _completion_shared

    _completion_shared._completion_scripts["bash"] = BASH_SCRIPT

"""One CLI behaviour for every command: a bad flag is one line on stderr and exit status 2.

``parse_cli(Config, argv, "eval")`` is ``draccus.parse`` whose errors (a value that does not
parse, a ``__post_init__`` check, a missing file) are printed as
``chunkwise eval: error: <message>`` without a traceback, then raised as ``CLIError``.
``argparse``'s own usage errors (an unknown flag) keep its usage line and exit 2.
"""

from __future__ import annotations

import re
import sys
from typing import Any


class CLIError(ValueError):
    """A configuration error already reported to the user (the CLI exits with status 2)."""


def one_line(err: BaseException) -> str:
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def _user_error(e: BaseException) -> BaseException:
    """The config error draccus wraps ("Couldn't instantiate class ..."): the outermost
    ValueError/OSError in the chain, then its explicit ``raise ... from`` causes."""
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, (ValueError, OSError)):
        if type(cause).__name__ == "DecodingError":  # "`steps`: Couldn't parse 'abc' into an int"
            return cause
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return e
    while isinstance(cause.__cause__, (ValueError, OSError)):
        cause = cause.__cause__
    return cause


def _help_with_every_default() -> None:
    """``--help``: a "(default: x)" for every flag, not only the commented ones, and no
    draccus "Config file for <group>" lines (they repeat per group and are never used)."""
    import argparse

    from draccus.help_formatter import SimpleHelpFormatter

    if getattr(SimpleHelpFormatter, "_chunkwise", False):
        return
    original = SimpleHelpFormatter._format_action

    def format_action(self: Any, action: argparse.Action) -> str:
        if isinstance(action.help, str) and action.help.startswith("Config file for"):
            return ""
        if not (action.help or "").strip() and action.option_strings and action.default is not argparse.SUPPRESS:
            action.help = "(default: %(default)s)"
        return original(self, action)

    def format_usage_actions(self: Any, usage: Any, actions: Any, groups: Any, prefix: Any = None) -> None:
        kept = [a for a in actions if not (isinstance(a.help, str) and a.help.startswith("Config file for"))]
        return original_usage(self, usage, kept, groups, prefix)

    original_usage = SimpleHelpFormatter.add_usage
    SimpleHelpFormatter._format_action = format_action  # type: ignore[method-assign]
    SimpleHelpFormatter.add_usage = format_usage_actions  # type: ignore[method-assign]
    SimpleHelpFormatter._chunkwise = True  # type: ignore[attr-defined]


def parse_cli(config_class: type, argv: list[str] | None, prog: str) -> Any:
    import draccus

    argv = list(argv or [])
    if "-h" in argv or "--help" in argv:
        _help_with_every_default()
    try:
        return draccus.parse(config_class, args=argv, prog=f"chunkwise {prog}")
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every parse failure is the user's flag; say which
        msg = re.sub(r"^`([\w.]+)`:", r"--\1:", one_line(_user_error(e)))
        print(f"chunkwise {prog}: error: {msg}", file=sys.stderr)
        raise CLIError(msg) from e

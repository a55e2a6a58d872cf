"""One CLI behaviour for every command: a bad flag is one line on stderr and exit status 2.

``parse_cli(Config, argv, "eval")`` is ``draccus.parse`` whose errors (a value that does not
parse, a ``__post_init__`` check, a missing file) are printed as
``chunkwise eval: error: <message>`` without a traceback, then raised as ``CLIError``.
``argparse``'s own usage errors (an unknown flag) keep its usage line and exit 2.

draccus reads every value as YAML, so ``--token=0123`` would become the int 83 and then the
string "83". A flag whose field is a ``str`` is taken as typed: ``protect_strings`` quotes
its value when YAML would read it as anything but that same string (``null``/``none``/empty
stay unquoted on an optional field, so they still mean None).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
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


def _string_fields(cls: type, prefix: str = "") -> dict[str, bool]:
    """Dotted flag name -> whether None is allowed, for every ``str`` field under ``cls``."""
    out: dict[str, bool] = {}
    if not dataclasses.is_dataclass(cls):
        return out
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: leave those flags to draccus
        return out
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        t = hints.get(f.name, f.type)
        args = typing.get_args(t) if typing.get_origin(t) in (typing.Union, types.UnionType) else (t,)
        kinds = [a for a in args if a is not type(None)]
        name = prefix + f.name
        if kinds == [str]:
            out[name] = type(None) in args
        elif len(kinds) == 1 and dataclasses.is_dataclass(kinds[0]):
            out.update(_string_fields(kinds[0], name + "."))
    return out


def protect_strings(config_class: type, argv: list[str]) -> list[str]:
    """``argv`` with the value of every ``str`` flag quoted for YAML when YAML would change it."""
    import yaml

    fields = _string_fields(config_class)
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in fields and not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value, eq, i = argv[i + 1], "=", i + 1
        if name in fields and eq:
            optional_none = fields[name] and value.lower() in ("", "null", "none", "~")
            try:
                same = yaml.safe_load(value) == value
            except yaml.YAMLError:
                same = False
            if not same and not optional_none:
                value = "'" + value.replace("'", "''") + "'"
            arg = f"--{name}={value}"
        out.append(arg)
        i += 1
    return out


def parse_cli(config_class: type, argv: list[str] | None, prog: str) -> Any:
    import draccus

    argv = protect_strings(config_class, list(argv or []))
    label = prog if prog.startswith("python ") else f"chunkwise {prog}"  # a module run with -m keeps its name
    if "-h" in argv or "--help" in argv:
        _help_with_every_default()
    try:
        return draccus.parse(config_class, args=argv, prog=label)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every parse failure is the user's flag; say which
        msg = re.sub(r"^`([\w.]+)`:", r"--\1:", one_line(_user_error(e)))
        print(f"{label}: error: {msg}", file=sys.stderr)
        raise CLIError(msg) from e

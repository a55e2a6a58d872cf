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


def parse_cli(config_class: type, argv: list[str] | None, prog: str) -> Any:
    import draccus

    try:
        return draccus.parse(config_class, args=list(argv or []))
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - every parse failure is the user's flag; say which
        msg = re.sub(r"^`([\w.]+)`:", r"--\1:", one_line(_user_error(e)))
        print(f"chunkwise {prog}: error: {msg}", file=sys.stderr)
        raise CLIError(msg) from e

"""``chunkwise <command> [--flag=value ...]``: one entry point, one module per command.

Each command module exposes ``main(argv: list[str]) -> int`` and parses its own
dataclass config with draccus, so flags follow the seeds (``--env.type=metaworld
--env.task=push-v3 --n_episodes=10``). Modules are imported lazily: ``chunkwise eval``
does not pay for importing the gRPC server, and vice versa.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Mapping, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "collect": ("chunkwise.data.collect", "record scripted-expert demonstrations as a LeRobot v3 dataset"),
    "train": ("chunkwise.training.train", "behaviour-cloning training of a chunk policy (ACT, flow)"),
    "eval": ("chunkwise.eval.run", "evaluate one policy / strategy / delay (virtual clock or --server)"),
    "sweep": ("chunkwise.eval.sweep", "success vs inference delay for many strategies; table + plot"),
    "serve": ("chunkwise.serving.server", "serve a policy over gRPC (PolicyServer)"),
    "rl": ("chunkwise.rl.train", "SAC fine-tuning over action chunks"),
    "bench": ("chunkwise.bench", "benchmarks: scheduler overhead, serving, RTC guidance"),
    "demo": ("chunkwise.demo", "collect -> train -> eval sync & async under delay (the README demo)"),
}


def dispatch(prog: str, noun: str, table: Mapping[str, tuple[str, str]], argv: list[str],
             notes: Sequence[str] = ()) -> int:
    """Run ``table[argv[0]]``'s ``main(argv[1:])``; usage on no/unknown name.

    ``table`` maps a name to (module exposing ``main(argv) -> int``, one-line help);
    ``notes`` are extra lines at the end of the usage text.
    """
    width = max(map(len, table))
    usage = "\n".join(
        [f"usage: {prog} <{noun}> [--flag=value ...]", "", f"{noun}s:"]
        + [f"  {name:<{width}}  {help_}" for name, (_, help_) in table.items()]
        + ["", f"`{prog} <{noun}> --help` lists its flags.", *notes]
    )
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in table:
        close = difflib.get_close_matches(name, table, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        print(f"{prog}: unknown {noun} {name!r}; valid: {', '.join(table)}.{hint}\n\n{usage}", file=sys.stderr)
        return 2
    module = importlib.import_module(table[name][0])
    return int(module.main(rest) or 0)


def version() -> str:
    """The installed distribution's version (the package's own if it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("chunkwise")
    except PackageNotFoundError:
        from chunkwise import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--version"], ["-V"]):
        print(f"chunkwise {version()}")
        return 0
    return dispatch("chunkwise", "command", COMMANDS, args, notes=["`chunkwise --version` prints the version."])


if __name__ == "__main__":
    sys.exit(main())

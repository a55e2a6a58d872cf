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
from typing import Mapping

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


def dispatch(prog: str, noun: str, table: Mapping[str, tuple[str, str]], argv: list[str]) -> int:
    """Run ``table[argv[0]]``'s ``main(argv[1:])``; usage on no/unknown name.

    ``table`` maps a name to (module exposing ``main(argv) -> int``, one-line help).
    """
    width = max(map(len, table))
    usage = "\n".join(
        [f"usage: {prog} <{noun}> [--flag=value ...]", "", f"{noun}s:"]
        + [f"  {name:<{width}}  {help_}" for name, (_, help_) in table.items()]
        + ["", f"`{prog} <{noun}> --help` lists its flags."]
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


def main(argv: list[str] | None = None) -> int:
    return dispatch("chunkwise", "command", COMMANDS, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())

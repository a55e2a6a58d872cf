"""``chunkwise bench <what> [--flag=value ...]``: benchmarks, one module per subject.

To add one, put an entry in ``BENCHMARKS``: name -> (module exposing ``main(argv) -> int``,
one-line help). Modules are imported only when their benchmark runs.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, tuple[str, str]] = {
    "scheduler": (
        "chunkwise.runtime.bench_scheduler",
        "scheduler overhead per control step vs a MetaWorld env step (target < 2%)",
    ),
    "serve": ("chunkwise.serving.bench_serve", "PolicyServer latency/throughput vs gRPC echo, pickle and openpi patterns"),
    "rtc": (
        "chunkwise.policies.flow.bench_rtc",
        "flow policy time per chunk: plain vs RTC guidance (VJP per step) vs rtc_trained vs delta expert",
    ),
}


def _usage() -> str:
    width = max(map(len, BENCHMARKS))
    lines = ["usage: chunkwise bench <what> [--flag=value ...]", "", "benchmarks:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(BENCHMARKS.items())]
    lines += ["", "`chunkwise bench <what> --help` lists its flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"chunkwise bench: unknown benchmark {name!r}; valid: {', '.join(sorted(BENCHMARKS))}\n\n{_usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

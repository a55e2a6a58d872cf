"""``chunkwise bench <what> [--flag=value ...]``: benchmarks, one module per subject.

To add one, put an entry in ``BENCHMARKS``: name -> (module exposing ``main(argv) -> int``,
one-line help). Modules are imported only when their benchmark runs.
"""

from __future__ import annotations

import sys

BENCHMARKS: dict[str, tuple[str, str]] = {
    "scheduler": (
        "chunkwise.eval.bench_scheduler",
        "scheduler overhead per control step vs a MetaWorld env step (target < 2%)",
    ),
    "serve": ("chunkwise.serving.bench_serve", "PolicyServer latency/throughput vs gRPC echo, pickle and openpi patterns"),
    "fuzz": ("chunkwise.serving.fuzz", "fuzzed requests against `chunkwise serve`: 0 crashes, hangs, OK with non-finite"),
    "soak": (
        "chunkwise.serving.chaos",
        "many robots vs a server process with disconnects, frozen clients and a kill -9: 0 lost/stale chunks",
    ),
    "clocks": (
        "chunkwise.eval.clocks",
        "virtual clock vs wall clock: a served policy at several latencies, then the same with the measured delays",
    ),
    "rtc": (
        "chunkwise.policies.flow.bench_rtc",
        "flow policy time per chunk: plain vs RTC guidance (VJP per step) vs rtc_trained vs delta expert",
    ),
}


def main(argv: list[str] | None = None) -> int:
    from chunkwise.cli import dispatch

    return dispatch("chunkwise bench", "benchmark", BENCHMARKS, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())

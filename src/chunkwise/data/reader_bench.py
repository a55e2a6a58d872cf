"""Training-sample throughput of ``ChunkDataset``: PNG-in-parquet vs video cameras.

    python -m chunkwise.data.reader_bench --roots=data/push-png,data/push-av1 \\
        [--batch_size=64 --batches=40 --chunk_size=50 --seed=0 --video_threads=1]

For each dataset: open time, then ``batches`` batches of ``batch_size`` uniformly random
frames through ``get_batch`` (what the trainer draws), then one pass in index order.
samples/s counts windows with every camera decoded (wall clock; the CPU µs per sample
columns are process time, steadier on a shared machine); for video, the decoder's seeks and
decoded frames per sample show what random access costs (a keyframe every g frames:
at most g frames decoded per sample). Prints a markdown table.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chunkwise.data.dataset import ChunkDataset


@dataclass
class ReaderBenchConfig:
    roots: str = ""  # comma-separated dataset directories
    batch_size: int = 64
    batches: int = 40  # random batches timed per dataset
    chunk_size: int = 50
    seed: int = 0
    video_threads: int = 1  # decoder threads per file (0: FFmpeg's choice)

    def __post_init__(self) -> None:
        self.root_list = [r.strip() for r in self.roots.split(",") if r.strip()]
        if not self.root_list:
            raise ValueError("--roots is required (comma-separated dataset directories)")
        if self.batch_size <= 0 or self.batches <= 0:
            raise ValueError("--batch_size and --batches must be positive")


def _storage(ds: ChunkDataset) -> str:
    if not ds.camera_keys:
        return "no camera"
    ft = ds.features[ds.camera_keys[0]]
    if ft["dtype"] == "video":
        info = ft.get("info", {})
        return f"video {info.get('video.codec', '?')} g={info.get('video.g', '?')}"
    return "png"


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def bench_one(root: str, cfg: ReaderBenchConfig) -> dict:
    t0 = time.perf_counter()
    ds = ChunkDataset(root, chunk_size=cfg.chunk_size)
    if ds._decoders is not None:
        ds._decoders.threads = cfg.video_threads
        ds._decoders.close()
    open_s = time.perf_counter() - t0
    rng = np.random.default_rng(cfg.seed)
    ds.get_batch(rng.integers(0, len(ds), size=cfg.batch_size))  # warm-up (opens the files)
    decs = list(ds._decoders._open.values()) if ds._decoders is not None else []
    seeks0, dec0 = sum(d.seeks for d in decs), sum(d.decoded for d in decs)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(cfg.batches):
        ds.get_batch(rng.integers(0, len(ds), size=cfg.batch_size))
    rand_s, rand_cpu = time.perf_counter() - t0, time.process_time() - c0
    n_rand = cfg.batches * cfg.batch_size
    decs = list(ds._decoders._open.values()) if ds._decoders is not None else []
    seeks = (sum(d.seeks for d in decs) - seeks0) / n_rand if decs else float("nan")
    decoded = (sum(d.decoded for d in decs) - dec0) / n_rand if decs else float("nan")
    t0, c0 = time.perf_counter(), time.process_time()
    for start in range(0, len(ds), cfg.batch_size):
        ds.get_batch(np.arange(start, min(start + cfg.batch_size, len(ds))))
    seq_s, seq_cpu = time.perf_counter() - t0, time.process_time() - c0
    ds.close()
    return {"root": root, "storage": _storage(ds), "frames": len(ds), "cameras": len(ds.camera_keys),
            "mb": _size_mb(Path(root)), "open_s": open_s, "random": n_rand / rand_s, "sequential": len(ds) / seq_s,
            "random_cpu_us": rand_cpu / n_rand * 1e6, "sequential_cpu_us": seq_cpu / len(ds) * 1e6,
            "seeks": seeks, "decoded": decoded}


def main(argv: list[str] | None = None) -> int:
    from chunkwise.common.cli import CLIError, parse_cli

    try:
        cfg = parse_cli(ReaderBenchConfig, sys.argv[1:] if argv is None else argv, 'python -m chunkwise.data.reader_bench')
    except CLIError:
        return 2
    print(f"batch_size {cfg.batch_size}, {cfg.batches} random batches, chunk_size {cfg.chunk_size}, "
          f"video_threads {cfg.video_threads}")
    print("| dataset | storage | frames | MB | open (s) | random samples/s | CPU µs / random sample "
          "| in-order samples/s | CPU µs / in-order sample | seeks / sample | frames decoded / sample |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for root in cfg.root_list:
        r = bench_one(root, cfg)
        print(f"| {Path(r['root']).name} | {r['storage']} | {r['frames']} | {r['mb']:.1f} | {r['open_s']:.2f} "
              f"| {r['random']:.0f} | {r['random_cpu_us']:.0f} | {r['sequential']:.0f} | {r['sequential_cpu_us']:.0f} "
              f"| {r['seeks']:.2f} | {r['decoded']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

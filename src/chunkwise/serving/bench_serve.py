"""``chunkwise bench serve``: PolicyServer latency/throughput vs other transports, same run.

Measured on loopback, every server in its own process, clients in this process:

1. latency, batch 1, one client, sequential requests: round trip minus the server's
   reported model time, for a state-only observation (39 float32) and for state + two
   224x224x3 uint8 images; p50 / p99 over ``n_requests``;
2. throughput: requests/s with 1, 8, 32 concurrent clients (one connection each, one
   request in flight each) for ``duration_s``; batch sizes chunkwise achieved;
3. optional soak (``--soak_seconds``): 32 streaming sessions against an echo policy,
   every reply checked (lost / duplicated / misdelivered / non-monotone).

chunkwise is measured on three paths of one server process: gRPC ``Infer``, gRPC
``Stream`` and the openpi websocket endpoint (``--openpi_port``, ``openpi_endpoint``).
Compared against (from ``benchmarks/`` in the repo, outside the package): a bare gRPC
echo of the same payload (transport floor), a bare websocket echo (``ws_echo``: bytes in,
a reply of the openpi reply's size out; the websocket floor, served by this module), the
LeRobot pattern (pickled payloads over gRPC, one request at a time) and the openpi pattern
(websocket + msgpack-numpy, openpi-client's client when it imports, else chunkwise's
byte-identical codec and client). All servers run the same policy: a small torch MLP
(``--hidden``) padded to ``--model_ms`` per call, standing in for an accelerator whose
forward time barely depends on small batch sizes; latency runs use ``model_ms=0``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from chunkwise.serving.process import ServerProcess

STATE_DIM, ACTION_DIM, CHUNK = 39, 4, 50
PATTERNS = ("echo", "ws_echo", "chunkwise", "chunkwise_fast", "openpi_endpoint", "pickle", "openpi")
_ON_CHUNKWISE_WS = ("chunkwise_fast", "openpi_endpoint")  # ports of the chunkwise server process


@dataclass
class BenchServeConfig:
    n_requests: int = 300  # latency samples per pattern and payload
    duration_s: float = 3.0  # per throughput point
    clients: list[int] = field(default_factory=lambda: [1, 8, 32, 64])
    model_ms: float = 5.0  # fixed per-call model time in the throughput runs
    hidden: int = 256
    max_wait_ms: float = 2.0
    soak_seconds: float = 0.0  # > 0: also run the 32-client soak for this long
    soak_clients: int = 32
    benchmarks_dir: str = ""  # default: <repo>/benchmarks
    patterns: list[str] = field(default_factory=lambda: list(PATTERNS))
    output: str = ""  # write all numbers as JSON here
    nice: int = 0

    def __post_init__(self) -> None:
        valid = set(PATTERNS)
        bad = set(self.patterns) - valid
        if bad:
            raise ValueError(f"unknown patterns {sorted(bad)}; valid: {sorted(valid)}")
        if self.n_requests < 10 or self.duration_s <= 0 or not self.clients or min(self.clients) < 1:
            raise ValueError("n_requests >= 10, duration_s > 0 and clients >= 1 are required")


# ---------------------------------------------------------------------------- helpers


def _obs(images: bool, t: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(t)
    obs: dict[str, Any] = {"observation.state": rng.standard_normal(STATE_DIM).astype(np.float32), "task": "push"}
    if images:
        for c in range(2):
            obs[f"observation.images.cam{c}"] = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    return obs


def _load(bench_dir: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"chunkwise_bench_{name}", bench_dir / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Script:
    """A benchmarks/<name>.py server process printing 'listening on port N'."""

    def __init__(self, path: Path | list[str], args: list[str], nice: int) -> None:
        cmd = [sys.executable, *([str(path)] if isinstance(path, Path) else path), "--port=0", *args]
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
                                          "MKL_NUM_THREADS": "1"})  # same as `chunkwise serve`
        lines = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            lines.append(line)
            m = re.search(r"listening on port (\d+)", line)
            if m:
                self.address = f"127.0.0.1:{m.group(1)}"
                threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
                return
        raise RuntimeError(f"{path} did not start:\n{''.join(lines)}")

    def __enter__(self) -> "_Script":
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": len(xs)}


# ---------------------------------------------------------------------------- clients
# Each factory returns (call(t) -> model_ms reported by the server, close()).


def _chunkwise_client(address: str, images: bool, stream: bool, session: str) -> tuple[Callable, Callable]:
    import queue as queue_mod

    from chunkwise.clients.remote_policy import RemotePolicy
    from chunkwise.wire.codec import decode_tensor, encode_request

    rp = RemotePolicy(address, session_id=session)
    rp.ensure_session(session)
    obs = _obs(images)
    batch_sizes: list[int] = []
    if not stream:
        def call(t: int) -> float:
            r = rp.infer(encode_request(obs, session_id=session, episode_id=rp.episode_id, timestep=t))
            decode_tensor(r.actions)
            batch_sizes.append(r.timings.batch_size)
            return r.timings.model_ms
        call.batch_sizes = batch_sizes  # type: ignore[attr-defined]
        return call, rp.close
    q: queue_mod.SimpleQueue = queue_mod.SimpleQueue()
    replies = rp.open_stream(iter(q.get, None))

    def call_s(t: int) -> float:
        q.put(encode_request(obs, session_id=session, episode_id=rp.episode_id, timestep=t))
        r = next(replies)
        if r.error.code:
            raise RuntimeError(r.error.message)
        decode_tensor(r.actions)
        batch_sizes.append(r.timings.batch_size)
        return r.timings.model_ms

    def close() -> None:
        q.put(None)
        rp.close()

    call_s.batch_sizes = batch_sizes  # type: ignore[attr-defined]
    return call_s, close


def _echo_client(mod: Any, address: str, images: bool) -> tuple[Callable, Callable]:
    from chunkwise.wire.codec import encode_request

    payload = encode_request(_obs(images), session_id="echo", episode_id=0, timestep=0).SerializeToString()
    channel, rpc = mod.make_client(address)

    def call(t: int) -> float:
        rpc(payload, timeout=30)
        return 0.0

    return call, channel.close


def _pickle_client(mod: Any, address: str, images: bool) -> tuple[Callable, Callable]:
    c = mod.PickleClient(address)
    obs = _obs(images)

    def call(t: int) -> float:
        return float(c.infer(obs, t)["model_ms"])

    return call, c.close


def _openpi_client(mod: Any, address: str, images: bool) -> tuple[Callable, Callable]:
    c = mod.make_client(address)
    obs = _obs(images)

    def call(t: int) -> float:
        return float(c.infer(obs)["server_timing"]["infer_ms"])

    return call, lambda: c._ws.close()


def _openpi_endpoint_client(address: str, images: bool) -> tuple[Callable, Callable]:
    """chunkwise's openpi endpoint, the openpi pattern's payload (the policy's own keys)."""
    from chunkwise.serving.openpi_client import OpenpiWebsocketClient

    host, port = address.rsplit(":", 1)
    c = OpenpiWebsocketClient(host, int(port))
    obs = _obs(images)
    batch_sizes: list[int] = []

    def call(t: int) -> float:
        timing = c.infer(obs)["server_timing"]
        batch_sizes.append(timing["batch_size"])
        return float(timing["model_ms"])

    call.batch_sizes = batch_sizes  # type: ignore[attr-defined]
    return call, c.close


def _fast_client(address: str, images: bool, session: str) -> tuple[Callable, Callable]:
    """chunkwise's typed messages over the websocket fast path (``/chunkwise.v1``)."""
    from chunkwise.serving.openpi_client import FastWebsocketClient
    from chunkwise.wire.codec import decode_tensor, encode_request

    host, port = address.rsplit(":", 1)
    c = FastWebsocketClient(host, int(port))
    c.reset(session, 0)
    obs = _obs(images)
    batch_sizes: list[int] = []

    def call(t: int) -> float:
        r = c.infer(encode_request(obs, session_id=session, episode_id=0, timestep=t))
        if r.error.code:
            raise RuntimeError(r.error.message)
        decode_tensor(r.actions)
        batch_sizes.append(r.timings.batch_size)
        return r.timings.model_ms

    call.batch_sizes = batch_sizes  # type: ignore[attr-defined]
    return call, c.close


def _ws_echo_client(address: str, images: bool) -> tuple[Callable, Callable]:
    from websockets.sync.client import connect

    from chunkwise.wire.msgpack_numpy import packb

    payload = packb(_obs(images))  # the bytes the openpi pattern sends
    ws = connect(f"ws://{address}", compression=None, max_size=None)
    ws.pending_legacy_warning = False  # closed below, not by a with block

    def call(t: int) -> float:
        ws.send(payload)
        ws.recv()
        return 0.0

    return call, ws.close


def ws_echo_main(argv: list[str]) -> None:
    """The websocket floor: every binary frame answered with ``--reply_bytes`` bytes."""
    import argparse
    import asyncio
    import signal
    import socket

    from websockets.asyncio.server import serve

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reply_bytes", type=int, default=900)
    args = ap.parse_args(argv)
    reply = b"\0" * args.reply_bytes

    async def handler(ws: Any) -> None:
        async for _ in ws:
            await ws.send(reply)

    async def main_() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", args.port))
        async with serve(handler, sock=sock, compression=None, max_size=None):
            print(f"listening on port {sock.getsockname()[1]}", flush=True)
            stop = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
            await stop

    asyncio.run(main_())


# ---------------------------------------------------------------------------- measurements


def _latency_samples(call: Callable, t0: int, n: int, over: list[float]) -> None:
    for t in range(t0, t0 + n):
        start = time.perf_counter()
        model_ms = call(t)
        over.append(1000 * (time.perf_counter() - start) - model_ms)


def _throughput_round(clients: list[tuple[Callable, Callable]], duration_s: float, t_base: int) -> tuple[int, float, list[str]]:
    """All clients call as fast as they can for ``duration_s``; returns (requests, elapsed, errors)."""
    n = len(clients)
    counts = [0] * n
    errors: list[str] = []
    start = threading.Barrier(n + 1)
    stop_at = [0.0]

    def run(i: int) -> None:
        call = clients[i][0]
        start.wait()
        t = t_base
        try:
            while time.monotonic() < stop_at[0]:
                call(t)
                t += 1
                counts[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    stop_at[0] = time.monotonic() + duration_s
    t0 = time.monotonic()
    start.wait()
    for th in threads:
        th.join(duration_s + 30)
    return sum(counts), time.monotonic() - t0, errors


# ---------------------------------------------------------------------------- main


def _servers(cfg: BenchServeConfig, bench_dir: Path, cameras: int, model_ms: float):  # noqa: ANN202
    """Context managers for each pattern's server with this policy config."""
    common = [f"--model_ms={model_ms}", f"--cameras={cameras}", f"--chunk_size={CHUNK}", f"--state_dim={STATE_DIM}",
              f"--action_dim={ACTION_DIM}", f"--hidden={cfg.hidden}"]
    ours = ServerProcess(
        ["--policy.type=mlp", f"--policy.model_ms={model_ms}", f"--policy.cameras={cameras}",
         f"--policy.state_dim={STATE_DIM}", f"--policy.action_dim={ACTION_DIM}", f"--policy.chunk_size={CHUNK}",
         f"--policy.hidden={cfg.hidden}", f"--max_wait_ms={cfg.max_wait_ms}", "--max_message_bytes=4194304",
         # the fast path's and the openpi endpoint's clients are open at once (2 x 64 connections)
         "--openpi_port=0", "--max_streams=256"],
        nice=cfg.nice, lifetime_s=600,
    )
    reply_bytes = 40 + CHUNK * ACTION_DIM * 4
    ws_reply_bytes = 120 + CHUNK * ACTION_DIM * 4  # msgpack of {"actions", "server_timing"}
    return {
        "chunkwise": lambda: ours,
        "ws_echo": lambda: _Script(["-m", "chunkwise.serving.bench_serve", "ws_echo"],
                                   [f"--reply_bytes={ws_reply_bytes}"], cfg.nice),
        "echo": lambda: _Script(bench_dir / "echo_server.py", [f"--reply_bytes={reply_bytes}"], cfg.nice),
        "pickle": lambda: _Script(bench_dir / "pickle_pattern.py", common, cfg.nice),
        "openpi": lambda: _Script(bench_dir / "openpi_pattern.py", common, cfg.nice),
    }


def _ws_address(srv: ServerProcess) -> str:
    """The openpi endpoint of a running ``chunkwise serve --openpi_port=0``."""
    line = next(x for x in srv.output if "listening on" in x)
    m = re.search(r"openpi=ws://(\S+)", line)
    assert m, line
    return m.group(1)


def _client_factory(pattern: str, mods: dict[str, Any], address: str, images: bool, stream: bool = False):  # noqa: ANN202
    if pattern == "chunkwise":
        return lambda i=0: _chunkwise_client(address, images, stream, session=f"bench-{images}-{stream}-{i}")
    if pattern == "openpi_endpoint":
        return lambda i=0: _openpi_endpoint_client(address, images)
    if pattern == "chunkwise_fast":
        return lambda i=0: _fast_client(address, images, session=f"bench-fast-{images}-{i}-{time.monotonic_ns()}")
    if pattern == "ws_echo":
        return lambda i=0: _ws_echo_client(address, images)
    if pattern == "echo":
        return lambda i=0: _echo_client(mods["echo_server"], address, images)
    if pattern == "pickle":
        return lambda i=0: _pickle_client(mods["pickle_pattern"], address, images)
    return lambda i=0: _openpi_client(mods["openpi_pattern"], address, images)


def run(cfg: BenchServeConfig) -> dict[str, Any]:
    """All servers of a phase run at once and are measured in interleaved rounds, so a
    load change on the machine affects every pattern alike."""
    bench_dir = Path(cfg.benchmarks_dir) if cfg.benchmarks_dir else Path(__file__).resolve().parents[3] / "benchmarks"
    patterns = list(cfg.patterns)
    mods: dict[str, Any] = {}
    if set(patterns) - {"chunkwise"}:
        if not bench_dir.is_dir():
            print(f"bench serve: {bench_dir} not found (it lives in the repo, not the wheel); "
                  "comparing nothing but chunkwise")
            patterns = ["chunkwise"]
        else:
            for name in ("echo_server", "pickle_pattern", "openpi_pattern"):
                mods[name] = _load(bench_dir, name)
    ws = [p for p in patterns if p in ("openpi", "ws_echo", *_ON_CHUNKWISE_WS)]
    if ws:
        try:
            import msgpack  # noqa: F401
            import websockets  # noqa: F401
        except ImportError as e:
            print(f"bench serve: {e}; `pip install -e '.[bench]'` to include {', '.join(ws)}")
            patterns = [p for p in patterns if p not in ws]
    if set(_ON_CHUNKWISE_WS) & set(patterns) and "chunkwise" not in patterns:
        patterns.insert(0, "chunkwise")  # they are ports of that server
    from contextlib import ExitStack

    from tqdm import tqdm

    results: dict[str, Any] = {"config": vars(cfg) | {"patterns": patterns}, "latency": {}, "throughput": {},
                               "load_average": os.getloadavg()}
    rounds = 5
    # 1. latency, batch 1, one client per pattern
    for images in (False, True):
        payload = "images" if images else "state"
        with ExitStack() as stack:
            servers = _servers(cfg, bench_dir, cameras=2 if images else 0, model_ms=0.0)
            clients: dict[str, tuple[Callable, Callable]] = {}
            for pattern in patterns:
                if pattern in _ON_CHUNKWISE_WS:
                    continue  # a port of the chunkwise server
                srv = stack.enter_context(servers[pattern]())
                if pattern == "chunkwise":
                    for stream in (False, True):
                        name = "chunkwise_stream" if stream else "chunkwise_infer"
                        clients[name] = _client_factory(pattern, mods, srv.address, images, stream)()
                    for p in _ON_CHUNKWISE_WS:
                        if p in patterns:
                            clients[p] = _client_factory(p, mods, _ws_address(srv), images)()
                else:
                    clients[pattern] = _client_factory(pattern, mods, srv.address, images)()
            samples: dict[str, list[float]] = {k: [] for k in clients}
            for call, _ in clients.values():
                for t in range(20):  # warm up
                    call(t)
            per_round = max(cfg.n_requests // rounds, 2)
            for r in tqdm(range(rounds), desc=f"latency {payload}", unit="round"):
                for name, (call, _) in clients.items():
                    _latency_samples(call, 100 + r * per_round, per_round, samples[name])
            for name, (_, close) in clients.items():
                close()
                results["latency"].setdefault(name, {})[payload] = {"overhead": _pct(samples[name])}
    # 2. throughput with a fixed per-call model time (echo has no model: skipped)
    tp_patterns = [p for p in patterns if p not in ("echo", "ws_echo")]
    with ExitStack() as stack:
        servers = _servers(cfg, bench_dir, cameras=0, model_ms=cfg.model_ms)
        addresses = {p: stack.enter_context(servers[p]()).address for p in tp_patterns if p not in _ON_CHUNKWISE_WS}
        for p in _ON_CHUNKWISE_WS:
            if p in tp_patterns:
                addresses[p] = _ws_address(servers["chunkwise"]())
        for n in tqdm(cfg.clients, desc="throughput", unit="n_clients"):
            pools = {p: [_client_factory(p, mods, addresses[p], False, stream=True)(i) for i in range(n)]
                     for p in tp_patterns}
            acc = {p: [0, 0.0, []] for p in tp_patterns}
            for r in range(rounds):
                for p in tp_patterns:
                    k, el, errs = _throughput_round(pools[p], cfg.duration_s / rounds, 1000 + r * 100000)
                    acc[p][0] += k
                    acc[p][1] += el
                    acc[p][2] += errs
            for p in tp_patterns:
                sizes: dict[int, int] = {}
                for call, close in pools[p]:
                    for b in getattr(call, "batch_sizes", []):
                        sizes[b] = sizes.get(b, 0) + 1
                    close()
                mean_batch = sum(k * v for k, v in sizes.items()) / max(sum(sizes.values()), 1) if sizes else None
                results["throughput"].setdefault(p, {})[str(n)] = {
                    "requests_per_s": acc[p][0] / acc[p][1], "requests": acc[p][0], "errors": acc[p][2][:3],
                    "mean_batch": mean_batch, "max_batch": max(sizes) if sizes else None,
                }
    # 3. soak
    if cfg.soak_seconds > 0:
        from chunkwise.serving.soak import run_soak

        with ServerProcess(["--policy.type=echo", "--policy.chunk_size=10"], nice=cfg.nice,
                           lifetime_s=cfg.soak_seconds + 120) as srv:
            res = run_soak(srv.address, n_clients=cfg.soak_clients, seconds=cfg.soak_seconds)
        results["soak"] = {**vars(res), "ok": res.ok, "summary": res.summary()}
    results["load_average_end"] = os.getloadavg()
    return results


def format_results(r: dict[str, Any]) -> str:
    lat, tp = r["latency"], r["throughput"]
    model_ms = r["config"]["model_ms"]
    lines = [f"load average at start/end: {r['load_average'][0]:.1f} / {r['load_average_end'][0]:.1f} "
             f"({os.cpu_count()} CPUs)", "", "latency, batch 1, one client: round trip minus server model time (ms)",
             f"{'pattern':<20}{'state p50':>11}{'state p99':>11}{'images p50':>12}{'images p99':>12}"]
    for name, d in lat.items():
        cells = []
        for payload, width in (("state", 11), ("images", 12)):
            o = d.get(payload, {}).get("overhead", {})
            cells += [f"{o.get('p50', float('nan')):>{width}.3f}", f"{o.get('p99', float('nan')):>{width}.3f}"]
        lines.append(f"{name:<20}" + "".join(cells))
    lines += ["", f"throughput: requests/s (policy: MLP padded to {model_ms} ms per call)",
              f"{'pattern':<20}" + "".join(f"{n + ' clients':>14}" for n in map(str, r['config']['clients'])) + "   mean/max batch @max"]
    for name, d in tp.items():
        last = d[str(r["config"]["clients"][-1])]
        mb = f"{last['mean_batch']:.1f}/{last['max_batch']}" if last["mean_batch"] else "1/1"
        lines.append(f"{name:<20}" + "".join(f"{d[str(n)]['requests_per_s']:>14.0f}" for n in r["config"]["clients"]) + f"   {mb}")
    lines += ["", "ratios (targets in brackets; MISS marks a missed target)"]

    def ov(name: str, payload: str, q: str = "p50") -> float | None:
        return lat.get(name, {}).get(payload, {}).get("overhead", {}).get(q)

    def ratio(label: str, a: float | None, b: float | None, target: str = "") -> None:
        if a is None or not b:
            return
        x = a / b
        ok = ""
        if target:
            op, val = target.split()
            ok = "" if (x <= float(val) if op == "<=" else x >= float(val)) else "  MISS"
        lines.append(f"{label:<60}{x:6.2f}x" + (f"   [{target}]{ok}" if target else ""))

    ours = ("chunkwise_infer", "chunkwise_stream", "chunkwise_fast", "openpi_endpoint")
    for payload in ("state", "images"):
        for q in ("p50", "p99"):
            present = [(n, ov(n, payload, q)) for n in ours if ov(n, payload, q) is not None]
            if present:
                best, best_v = min(present, key=lambda kv: kv[1])
                ratio(f"{q} {payload}: fastest chunkwise ({best}) / openpi", best_v, ov("openpi", payload, q),
                      "<= 1.0" if q == "p50" else "")
            ratio(f"{q} {payload}: openpi_endpoint / openpi", ov("openpi_endpoint", payload, q),
                  ov("openpi", payload, q), "<= 1.2" if q == "p50" else "")
            ratio(f"{q} {payload}: chunkwise_stream / gRPC echo", ov("chunkwise_stream", payload, q),
                  ov("echo", payload, q), "<= 1.2" if q == "p50" else "")
            ratio(f"{q} {payload}: chunkwise_infer / pickle", ov("chunkwise_infer", payload, q),
                  ov("pickle", payload, q), "<= 1.0" if q == "p50" else "")
            ratio(f"{q} {payload}: openpi / websocket echo", ov("openpi", payload, q), ov("ws_echo", payload, q))
    for n in map(str, r["config"]["clients"]):
        def rps(p: str, n: str = n) -> float | None:
            return tp.get(p, {}).get(n, {}).get("requests_per_s")

        big = int(n) >= 32
        ratio(f"requests/s {n} clients: chunkwise_stream / pickle", rps("chunkwise"), rps("pickle"),
              ">= 8" if big else "")
        ratio(f"requests/s {n} clients: openpi_endpoint / openpi", rps("openpi_endpoint"), rps("openpi"),
              ">= 10" if big else "")
        ratio(f"requests/s {n} clients: chunkwise_fast / openpi", rps("chunkwise_fast"), rps("openpi"))
    if "soak" in r:
        lines += ["", r["soak"]["summary"], f"soak ok: {r['soak']['ok']}"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from chunkwise.serving.server import parse_config

    cfg = parse_config(BenchServeConfig, argv, "bench serve")
    if cfg is None:
        return 2
    results = run(cfg)
    print(format_results(results))
    if cfg.output:
        out = Path(cfg.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str))
        os.replace(tmp, out)
        print(f"wrote {out}")
    if "soak" in results and not results["soak"]["ok"]:
        return 1
    return 0


if __name__ == "__main__":  # the websocket floor server: python -m chunkwise.serving.bench_serve ws_echo
    if sys.argv[1:2] == ["ws_echo"]:
        ws_echo_main(sys.argv[2:])

"""LeRobot async-inference transport pattern, reproduced for benchmarking ONLY.

Outside the chunkwise package on purpose. Observations and action chunks travel as
**pickled** Python objects inside gRPC messages and the server handles one request at a
time at batch size 1, which is how LeRobot's async inference moves data. Unpickling
bytes from the network executes arbitrary code (CVE-2026-25874): this server binds
loopback only and exists so `chunkwise bench serve` can measure the pattern side by side
with chunkwise's typed protocol. Never reuse it.

    python benchmarks/pickle_pattern.py --port=0 --model_ms=5 --cameras=0
"""

from __future__ import annotations

import argparse
import pickle  # the point of this file: the pattern being measured (unsafe)
import signal
import threading
import time
from concurrent import futures

import grpc

METHOD = "/bench.PickleAsync/SendObservationGetActions"


def main() -> None:
    from chunkwise.policies.testing import TestPolicyConfig, make_test_policy
    from chunkwise.types import stack_observations

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model_ms", type=float, default=0.0)
    ap.add_argument("--cameras", type=int, default=0)
    ap.add_argument("--chunk_size", type=int, default=50)
    ap.add_argument("--state_dim", type=int, default=39)
    ap.add_argument("--action_dim", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    policy = make_test_policy(TestPolicyConfig(
        type="mlp", cameras=args.cameras, model_ms=args.model_ms, chunk_size=args.chunk_size,
        state_dim=args.state_dim, action_dim=args.action_dim, hidden=args.hidden))
    lock = threading.Lock()  # one request at a time, batch size 1

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        with lock:
            t0 = time.perf_counter()
            obs = pickle.loads(request)  # noqa: S301 - the unsafe pattern under test
            t1 = time.perf_counter()
            actions = policy.predict_chunk(stack_observations([obs["observation"]]))[0]
            t2 = time.perf_counter()
            return pickle.dumps({"timestep": obs["timestep"], "actions": actions,
                                 "model_ms": 1000 * (t2 - t1), "preprocess_ms": 1000 * (t1 - t0)})

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=96),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.PickleAsync", {"SendObservationGetActions": grpc.unary_unary_rpc_method_handler(handle)}),))
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening on port {port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    server.stop(0)


class PickleClient:
    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self._call = self.channel.unary_unary(METHOD)

    def infer(self, obs: dict, timestep: int) -> dict:
        reply = self._call(pickle.dumps({"observation": obs, "timestep": timestep}), timeout=30)
        return pickle.loads(reply)  # noqa: S301

    def close(self) -> None:
        self.channel.close()


if __name__ == "__main__":
    main()

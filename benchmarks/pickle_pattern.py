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

import pickle  # the point of this file: the pattern being measured (unsafe)
import threading
import time

import grpc

METHOD = "/bench.PickleAsync/SendObservationGetActions"


def main() -> None:
    from _common import parse_policy_args, serve_unary_until_sigterm  # script dir is on sys.path when run

    from chunkwise.types import stack_observations

    args, policy = parse_policy_args()
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

    serve_unary_until_sigterm("bench.PickleAsync", "SendObservationGetActions", handle, args.port)


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

"""Pieces shared by the peer-pattern benchmark servers (outside the chunkwise package).

Each server is its own script, started by ``chunkwise bench serve`` as
``python benchmarks/<name>.py``; the script's directory is on ``sys.path`` then, so
``import _common`` works.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from typing import Any, Callable


def parse_policy_args(ap: argparse.ArgumentParser | None = None) -> tuple[argparse.Namespace, Any]:
    """The test-policy flags every pattern server takes, and the policy they describe.

    All patterns serve the same torch MLP (``chunkwise.policies.testing``) so that the
    comparison measures transport and serving, not models.
    """
    from chunkwise.policies.testing import TestPolicyConfig, make_test_policy

    ap = ap or argparse.ArgumentParser()
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
    return args, policy


def serve_unary_until_sigterm(service: str, method: str, handler: Callable[[bytes, Any], bytes], port: int) -> None:
    """Serve one raw-bytes unary gRPC method on loopback until SIGTERM.

    Same grpc Python server type and thread pool size as chunkwise's PolicyServer.
    Prints ``listening on port N`` (what ``chunkwise bench serve`` waits for).
    """
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=96),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(handler)}),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening on port {bound}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    server.stop(0)

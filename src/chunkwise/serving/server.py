"""``chunkwise serve``: load one policy once, serve it over gRPC to many sessions.

    chunkwise serve --policy.path=outputs/act --host=127.0.0.1 --port=8080
    chunkwise serve --policy.type=mlp --policy.model_ms=5 --port=0     # test policy

The policy is chosen on the command line only; clients can never make the server load a
path. Binding to anything but loopback requires ``--token`` (clients send it as
``authorization: Bearer <token>`` metadata); ``--tls_cert/--tls_key`` enable TLS.
``--port=0`` picks a free port; the first stdout line is always
``chunkwise serve: listening on <host>:<port> ...``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import logging
import signal
import sys
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import draccus
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chunkwise.policies.base import Policy
from chunkwise.policies.testing import TestPolicyConfig, make_test_policy
from chunkwise.serving.service import SERVICE_NAME, PolicyService

log = logging.getLogger(__name__)



@dataclass
class ServePolicyConfig(TestPolicyConfig):
    """``--policy.path=<checkpoint dir>`` or ``--policy.type=echo|mlp|expert`` (test policies)."""

    path: str = ""
    type: Literal["", "echo", "mlp", "expert"] = ""  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.type:
            super().__post_init__()
        if self.path and not Path(self.path).is_dir():
            raise ValueError(f"--policy.path={self.path!r} is not a directory")

    def validate(self) -> None:
        if bool(self.path) == bool(self.type):
            raise ValueError(
                "give exactly one of --policy.path=<checkpoint dir> or --policy.type=<echo|mlp|expert>"
            )

    def build(self) -> Policy:
        if self.path:
            from chunkwise.policies import load
            from chunkwise.policies.testing import LatencyFloor

            policy = load(self.path)
            return LatencyFloor(policy, self.model_ms) if self.model_ms > 0 else policy
        return make_test_policy(TestPolicyConfig(**{k: v for k, v in vars(self).items() if k != "path"}))


@dataclass
class ServeConfig:
    policy: ServePolicyConfig = field(default_factory=ServePolicyConfig)
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # required unless host is loopback
    tls_cert: str = ""
    tls_key: str = ""
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 256
    request_timeout_s: float = 10.0
    session_ttl_s: float = 300.0
    max_sessions: int = 1024
    max_message_bytes: int = 16 << 20
    max_workers: int = 96  # gRPC handler threads; each open Stream holds one
    torch_threads: int = 1
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    def __post_init__(self) -> None:
        self.policy.validate()
        if not (0 <= self.port < 65536):
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"refusing to bind {self.host!r} (not loopback) without --token; "
                "clients must then send 'authorization: Bearer <token>'"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both --tls_cert and --tls_key")
        for name in ("max_batch_size", "max_queue", "max_sessions", "max_workers", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0 or self.session_ttl_s <= 0:
            raise ValueError("max_wait_ms must be >= 0; request_timeout_s and session_ttl_s > 0")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>``; health checks stay open."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request: object, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (authorization: Bearer <token>)")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(lambda it, ctx: deny(None, ctx))

    def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and hmac.compare_digest(str(value).encode(), self._expected):
                return continuation(handler_call_details)
        if handler_call_details.method.endswith("/Stream"):
            return self._deny_stream
        return self._deny


@dataclass
class RunningServer:
    server: grpc.Server
    service: PolicyService
    port: int

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop(grace).wait()
        self.service.close()


def start_server(cfg: ServeConfig, policy: Policy | None = None) -> RunningServer:
    """Build and start a server (in this process); ``policy`` overrides ``cfg.policy``."""
    policy = policy if policy is not None else cfg.policy.build()
    service = PolicyService(
        policy,
        max_batch_size=cfg.max_batch_size,
        max_wait_ms=cfg.max_wait_ms,
        max_queue=cfg.max_queue,
        request_timeout_s=cfg.request_timeout_s,
        session_ttl_s=cfg.session_ttl_s,
        max_sessions=cfg.max_sessions,
        max_message_bytes=cfg.max_message_bytes,
    )
    interceptors = [TokenInterceptor(cfg.token)] if cfg.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="chunkwise-rpc"),
        interceptors=interceptors,
        # Twice the app limit: between 1x and 2x the handler answers INVALID_ARGUMENT with
        # sizes; beyond, gRPC itself answers RESOURCE_EXHAUSTED before buffering more.
        options=[
            ("grpc.max_receive_message_length", 2 * cfg.max_message_bytes),
            ("grpc.max_send_message_length", 2 * cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=cfg.max_workers * 4,
    )
    server.add_registered_method_handlers(SERVICE_NAME, service.method_handlers())
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
    if cfg.tls_cert:
        creds = grpc.ssl_server_credentials([(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, service=service, port=port)


def parse_config(cls: type, argv: list[str], prog: str) -> Any:
    """draccus.parse; a bad flag prints our own ValueError message (no traceback), None."""
    try:
        return draccus.parse(cls, args=list(argv))
    except Exception as e:  # draccus wraps the ValueError raised by __post_init__
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, ValueError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        while isinstance(cause.__cause__, ValueError):
            cause = cause.__cause__
        print(f"chunkwise {prog}: error: {cause}", file=sys.stderr)
        return None


def main(argv: list[str]) -> int:
    cfg = parse_config(ServeConfig, argv, "serve")
    if cfg is None:
        return 2
    # predict_chunk runs on gRPC handler threads, not the main thread. torch.set_num_threads
    # only configures the calling thread's OpenMP team, so other threads would still fork
    # a team of one thread per core; on a busy machine each op then waits for a descheduled
    # team member (measured here: a 3-layer MLP took 80 ms instead of 0.2 ms). The env
    # var, set before torch loads, applies to every thread.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(cfg.torch_threads))
        os.environ.setdefault("MKL_NUM_THREADS", str(cfg.torch_threads))
    else:
        log.warning("torch was imported before `serve` could set OMP_NUM_THREADS; set it in the environment")
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.policy.path or cfg.policy.type == "mlp":  # only torch policies pay for importing it
        import torch

        torch.set_num_threads(cfg.torch_threads)
    running = start_server(cfg)
    md = running.service.metadata
    print(
        f"chunkwise serve: listening on {cfg.host}:{running.port} policy={md.policy_type} "
        f"chunk_size={md.chunk_size} action_dim={md.action_dim} max_batch_size={cfg.max_batch_size} "
        f"tls={'on' if cfg.tls_cert else 'off'} token={'on' if cfg.token else 'off'}",
        flush=True,
    )
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not done.wait(1.0):
        running.service.sessions.expire()
    running.stop(grace=1.0)
    sizes = dict(sorted(running.service.batcher.batch_sizes.items()))
    print(f"chunkwise serve: stopped; batch sizes served {sizes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

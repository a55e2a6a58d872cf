"""``chunkwise serve``: load one policy once, serve it over gRPC to many sessions.

    chunkwise serve --policy.path=outputs/act --host=127.0.0.1 --port=8080
    chunkwise serve --policy.type=mlp --policy.model_ms=5 --port=0     # test policy
    CHUNKWISE_TOKEN=$(cat token) chunkwise serve --policy.path=... --host=0.0.0.0 --tls_cert=... --tls_key=...

The policy is chosen on the command line only; clients can never make the server load a
path. Binding to anything but loopback requires a token of at least 16 characters
(``--token_file``, the ``CHUNKWISE_TOKEN`` environment variable, or ``--token``; read
verbatim, never parsed as YAML); clients send it as ``authorization: Bearer <token>``
metadata; ``--tls_cert/--tls_key`` enable TLS (off loopback without TLS the server warns
that the token travels in clear text). ``--port=0`` picks a free port; the first stdout
line is always ``chunkwise serve: listening on <host>:<port> ...``. Limits and the
threat model: docs/serving.md ("Security", "Limits").
"""

from __future__ import annotations

import contextvars
import hmac
import ipaddress
import os
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import draccus
import grpc
from grpc_health.v1 import health, health_pb2

from chunkwise.policies.base import Policy
from chunkwise.policies.testing import TestPolicyConfig, make_test_policy
from chunkwise.serving.limits import MiB, ArrivalExecutor, AuthLimiter, Limits, host_of, peer_of
from chunkwise.serving.service import SERVICE_NAME, PolicyService

log = logging.getLogger(__name__)
TOKEN_ENV = "CHUNKWISE_TOKEN"
MIN_TOKEN_CHARS = 16  # off loopback
# Flags whose values are taken verbatim from the command line (draccus would read them
# as YAML: --token=0123 -> 83, --token=yes -> True, --host=[::1] -> a list).
VERBATIM_FLAGS = ("token", "token_file", "host", "tls_cert", "tls_key", "policy.path", "openpi_keys")
_defer_validation: contextvars.ContextVar[bool] = contextvars.ContextVar("chunkwise_defer_validation", default=False)


@dataclass
class ServePolicyConfig(TestPolicyConfig):
    """``--policy.path=<checkpoint dir>`` (its family is read from the directory; ``--policy.type=
    act|flow|lerobot|rl_sac`` beside it checks that), or ``--policy.type=echo|mlp|expert`` (test
    policies, no path)."""

    path: str = ""
    type: Literal["", "echo", "mlp", "expert", "act", "flow", "lerobot", "rl_sac"] = ""  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.type and self.type not in TEST_TYPES + CHECKPOINT_TYPES:
            raise ValueError(f"--policy.type={self.type!r}: choose one of {', '.join(TEST_TYPES + CHECKPOINT_TYPES)}")
        if self.type in TEST_TYPES:
            super().__post_init__()
        if self.path and not _defer_validation.get() and not Path(self.path).is_dir():
            raise ValueError(f"--policy.path={self.path!r} is not a directory")

    def validate(self) -> None:
        if self.type in CHECKPOINT_TYPES:
            if not self.path:
                raise ValueError(f"--policy.type={self.type} loads a checkpoint: give --policy.path=<its directory>")
            from chunkwise.policies.registry import checkpoint_type

            found = checkpoint_type(self.path)
            if found != self.type:
                raise ValueError(f"--policy.path={self.path} holds a {found!r} checkpoint, not --policy.type={self.type}")
        elif bool(self.path) == bool(self.type):
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


TEST_TYPES = ("echo", "mlp", "expert")
CHECKPOINT_TYPES = ("act", "flow", "lerobot", "rl_sac")


@dataclass
class ServeConfig:
    policy: ServePolicyConfig = field(default_factory=ServePolicyConfig)
    host: str = "127.0.0.1"
    port: int = 8080
    # Credentials (required unless host is loopback; >= 16 characters off loopback). One of:
    token: str = ""  # visible to other local users in `ps`; prefer token_file or $CHUNKWISE_TOKEN
    token_file: str = ""  # one token per line ('#' comments); each line is its own credential
    tls_cert: str = ""
    tls_key: str = ""
    # Batching and deadlines
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 64  # requests waiting for the model; more -> RESOURCE_EXHAUSTED
    request_timeout_s: float = 10.0  # from the request's arrival at the server
    # Sessions
    session_ttl_s: float = 300.0
    max_sessions: int = 1024
    max_sessions_per_connection: int = 64
    max_sessions_per_credential: int = 512
    session_takeover_s: float = 5.0
    # Request size
    max_message_bytes: int = 16 * MiB
    max_inflight_bytes: int = 128 * MiB
    max_extra_keys: int = 8
    max_task_chars: int = 4096
    # Streams, threads, connections
    max_streams: int = 64
    max_streams_per_connection: int = 16
    stream_idle_timeout_s: float = 60.0
    keepalive_s: float = 20.0
    keepalive_timeout_s: float = 10.0
    max_workers: int = 0  # model-pool threads (Stream + Infer); 0 = max_streams + max_queue + 8
    max_auth_failures_per_minute: int = 10
    # openpi's websocket protocol on a second port (-1 = off, 0 = a free port), same host,
    # tokens, TLS, limits and batcher as gRPC (serving/openpi.py, docs/serving.md)
    openpi_port: int = -1
    openpi_keys: str = ""  # extra openpi_key=policy_key pairs, e.g. observation/image=observation.images.top
    torch_threads: int = 1
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    def __post_init__(self) -> None:
        if not _defer_validation.get():
            self.validate()

    def validate(self) -> None:
        """All checks (``parse_serve_config`` runs them once the verbatim flags are in)."""
        self.policy.validate()
        if self.host.startswith("[") and self.host.endswith("]"):
            self.host = self.host[1:-1]  # --host=[::1]
        if not self.host:
            raise ValueError("--host must not be empty")
        if not (0 <= self.port < 65536):
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if not (-1 <= self.openpi_port < 65536):
            raise ValueError(f"openpi_port must be -1 (off) or in 0..65535, got {self.openpi_port}")
        if self.token and self.token_file:
            raise ValueError("give one of --token and --token_file, not both")
        tokens = self.tokens()
        if not is_loopback(self.host):
            if not tokens:
                raise ValueError(
                    f"refusing to bind {self.host!r} (not loopback) without a token (--token_file, ${TOKEN_ENV} "
                    "or --token); clients must then send 'authorization: Bearer <token>'"
                )
            short = [i for i, t in enumerate(tokens) if len(t) < MIN_TOKEN_CHARS]
            if short:
                raise ValueError(
                    f"refusing to bind {self.host!r} (not loopback) with a token shorter than {MIN_TOKEN_CHARS} "
                    f"characters (token {short[0] + 1}); make one with: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'"
                )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both --tls_cert and --tls_key")
        for name in ("tls_cert", "tls_key"):
            if getattr(self, name) and not Path(getattr(self, name)).is_file():
                raise ValueError(f"--{name}={getattr(self, name)!r} is not a file")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")
        self.limits()  # range checks of every limit

    def tokens(self) -> list[str]:
        """The accepted tokens, verbatim (``--token``, or the lines of ``--token_file``)."""
        if self.token_file:
            path = Path(self.token_file)
            if not path.is_file():
                raise ValueError(f"--token_file={self.token_file!r} is not a file")
            out = []
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line)
            if not out:
                raise ValueError(f"--token_file={self.token_file!r} holds no token")
        else:
            out = [self.token] if self.token else []
        for t in out:
            if not all(33 <= ord(c) < 127 for c in t):
                raise ValueError("a token must be printable ASCII without spaces (it is sent as an HTTP/2 header)")
        return out

    def credentials(self) -> dict[str, str]:
        """``authorization`` header value -> credential name (``token#1``, ``token#2``, ...)."""
        return {f"Bearer {t}": f"token#{i + 1}" for i, t in enumerate(self.tokens())}

    def limits(self) -> Limits:
        names = {f.name for f in fields(Limits)}
        return Limits(**{k: v for k, v in vars(self).items() if k in names})


def split_verbatim(argv: list[str], names: tuple[str, ...] = VERBATIM_FLAGS) -> tuple[list[str], dict[str, str]]:
    """Take ``--name=value`` / ``--name value`` for ``names`` out of ``argv``, verbatim."""
    rest: list[str] = []
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in names:
            if not eq:
                if i + 1 >= len(argv):
                    raise ValueError(f"--{name} needs a value")
                value = argv[i + 1]
                i += 1
            found[name] = value
        else:
            rest.append(arg)
        i += 1
    return rest, found


def parse_serve_config(argv: list[str], environ: dict[str, str] | None = None) -> ServeConfig:
    """``ServeConfig`` from flags; string flags that may hold anything (token, paths, host)
    are read verbatim, the token also from ``$CHUNKWISE_TOKEN``. Raises ValueError."""
    environ = os.environ if environ is None else environ
    rest, verbatim = split_verbatim(list(argv))
    token = _defer_validation.set(True)
    try:
        cfg = draccus.parse(ServeConfig, args=rest)
    finally:
        _defer_validation.reset(token)
    for name, value in verbatim.items():
        if name == "policy.path":
            cfg.policy.path = value
        else:
            setattr(cfg, name, value)
    if not cfg.token and not cfg.token_file and environ.get(TOKEN_ENV):
        cfg.token = environ[TOKEN_ENV]
    cfg.policy.__post_init__()
    cfg.validate()
    return cfg


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without an accepted ``authorization: Bearer <token>``; health checks
    stay open. Failed attempts are limited per client address (``AuthLimiter``): an
    address out of budget is refused, whatever token it sends, until it refills."""

    def __init__(self, credentials: dict[str, str] | str, limiter: AuthLimiter | None = None,
                 pool: Any = None) -> None:
        if isinstance(credentials, str):
            credentials = {f"Bearer {credentials}": "token#1"}
        self._expected = [(value.encode(), name) for value, name in credentials.items()]
        self._limiter = limiter or AuthLimiter(10)
        limiter_ = self._limiter

        def refuse_if_locked(context: grpc.ServicerContext) -> str:
            host = host_of(peer_of(context))
            wait = limiter_.locked_for(host)
            if wait > 0:
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"too many failed token attempts from this address; retry in {wait:.0f} s",
                )
            return host

        def deny(request: object, context: grpc.ServicerContext) -> None:
            host = refuse_if_locked(context)
            limiter_.failed(host)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token (authorization: Bearer <token>)")

        def deny_stream(request_iterator: object, context: grpc.ServicerContext) -> None:
            deny(None, context)

        for fn in (deny, deny_stream):
            if pool is not None:
                fn.experimental_thread_pool = pool  # type: ignore[attr-defined]
        self._refuse_if_locked = refuse_if_locked
        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny_stream)

    def _credential(self, value: str) -> str | None:
        got = value.encode()
        found = None
        for expected, name in self._expected:  # every token compared, in constant time
            if hmac.compare_digest(got, expected):
                found = name
        return found

    def intercept_service(self, continuation, handler_call_details):  # noqa: ANN001
        method = handler_call_details.method
        if method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        name = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                name = self._credential(str(value))
                break
        if name is None:
            return self._deny_stream if method.endswith("/Stream") else self._deny
        handler = continuation(handler_call_details)
        if handler is None or not self._limiter.any_locked:
            return handler
        return self._guarded(handler)

    def _guarded(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` refusing addresses that are out of their failed-attempt budget."""
        refuse = self._refuse_if_locked
        for kind in ("unary_unary", "stream_stream"):
            inner = getattr(handler, kind, None)
            if inner is None:
                continue

            def guarded(request: Any, context: grpc.ServicerContext, _inner: Any = inner) -> Any:
                refuse(context)
                return _inner(request, context)

            pool = getattr(inner, "experimental_thread_pool", None)
            if pool is not None:
                guarded.experimental_thread_pool = pool  # type: ignore[attr-defined]
            return handler._replace(**{kind: guarded})  # type: ignore[attr-defined]
        return handler


@dataclass
class RunningServer:
    server: grpc.Server
    service: PolicyService
    port: int
    pools: tuple = ()
    openpi: Any = None  # OpenpiEndpoint when --openpi_port is set

    def stop(self, grace: float = 1.0) -> None:
        if self.openpi is not None:
            self.openpi.stop()
        self.server.stop(grace).wait()
        self.service.close()
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)


def _health_handlers(servicer: health.HealthServicer, pool: Any) -> dict[str, grpc.RpcMethodHandler]:
    """The standard health service on the control pool (never behind model work)."""

    def check(request: Any, context: grpc.ServicerContext) -> Any:
        return servicer.Check(request, context)

    check.experimental_thread_pool = pool  # type: ignore[attr-defined]
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(  # non-blocking: holds no thread
            servicer.Watch, request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
        ),
    }
    if hasattr(servicer, "List") and hasattr(health_pb2, "HealthListRequest"):

        def list_(request: Any, context: grpc.ServicerContext) -> Any:
            return servicer.List(request, context)

        list_.experimental_thread_pool = pool  # type: ignore[attr-defined]
        handlers["List"] = grpc.unary_unary_rpc_method_handler(
            list_, request_deserializer=health_pb2.HealthListRequest.FromString,
            response_serializer=health_pb2.HealthListResponse.SerializeToString,
        )
    return handlers


def server_options(limits: Limits) -> list[tuple[str, Any]]:
    ms = lambda s: int(1000 * s)  # noqa: E731
    return [
        # A little above the app limit: up to it the handler answers INVALID_ARGUMENT with
        # sizes; beyond, gRPC answers RESOURCE_EXHAUSTED before buffering more.
        ("grpc.max_receive_message_length", limits.max_message_bytes + 4096),
        ("grpc.max_send_message_length", limits.max_message_bytes + 4096),
        ("grpc.so_reuseport", 0),
        # Keepalive: ping every connection; a peer that does not answer (frozen process,
        # half-open TCP) is dropped with all its calls, freeing their threads.
        ("grpc.keepalive_time_ms", ms(limits.keepalive_s)),
        ("grpc.keepalive_timeout_ms", ms(limits.keepalive_timeout_s)),
        # Any unanswered ping (also the flow-control BDP pings, which otherwise wait 60 s
        # and hold off the keepalive ping) ends the connection after the same timeout.
        ("grpc.http2.ping_timeout_ms", ms(limits.keepalive_timeout_s)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Accept client keepalive pings down to every 10 s (RemotePolicy pings every 20 s).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", min(10_000, ms(limits.keepalive_s))),
        ("grpc.http2.max_ping_strikes", 2),
    ]


def start_server(cfg: ServeConfig, policy: Policy | None = None) -> RunningServer:
    """Build and start a server (in this process); ``policy`` overrides ``cfg.policy``."""
    policy = policy if policy is not None else cfg.policy.build()
    limits = cfg.limits()
    credentials = cfg.credentials()
    service = PolicyService(policy, limits, credentials=credentials)
    workers = limits.workers
    model_pool = ArrivalExecutor(max_workers=workers, thread_name_prefix="chunkwise-rpc")
    control_pool = ArrivalExecutor(max_workers=limits.control_workers, thread_name_prefix="chunkwise-ctl")
    interceptors = (
        [TokenInterceptor(credentials, AuthLimiter(limits.max_auth_failures_per_minute), control_pool)]
        if credentials else []
    )
    server = grpc.server(
        model_pool,
        interceptors=interceptors,
        options=server_options(limits),
        # A backstop; streams and model queue are limited by the service itself.
        maximum_concurrent_rpcs=2 * workers + 64,
    )
    server.add_registered_method_handlers(SERVICE_NAME, service.method_handlers(control_pool))
    health_servicer = health.HealthServicer(experimental_thread_pool=control_pool)
    server.add_registered_method_handlers("grpc.health.v1.Health", _health_handlers(health_servicer, control_pool))
    address = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
    if cfg.tls_cert:
        creds = grpc.ssl_server_credentials([(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    server.start()
    service.start()
    openpi = None
    if cfg.openpi_port >= 0:
        from chunkwise.serving.openpi import OpenpiConfig, OpenpiEndpoint

        openpi = OpenpiEndpoint(
            service, OpenpiConfig(host=cfg.host, port=cfg.openpi_port, keys=cfg.openpi_keys, tls_cert=cfg.tls_cert,
                                  tls_key=cfg.tls_key),
            credentials, AuthLimiter(limits.max_auth_failures_per_minute),
        )
        try:
            openpi.start()
        except BaseException:
            server.stop(0)
            service.close()
            raise
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, service=service, port=port, pools=(model_pool, control_pool), openpi=openpi)


def parse_config(cls: type, argv: list[str], prog: str) -> Any:
    """draccus.parse; a bad flag prints our own ValueError message (no traceback), None."""
    try:
        if cls is ServeConfig:
            return parse_serve_config(argv)
        return draccus.parse(cls, args=list(argv))
    except SystemExit:
        raise
    except Exception as e:  # draccus wraps the ValueError raised by __post_init__
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, ValueError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            # e.g. a YAML error inside draccus: one line, no traceback
            print(f"chunkwise {prog}: error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                  file=sys.stderr)
            return None
        while isinstance(cause.__cause__, ValueError):
            cause = cause.__cause__
        print(f"chunkwise {prog}: error: {cause}", file=sys.stderr)
        return None


def security_warnings(cfg: ServeConfig, argv: list[str]) -> list[str]:
    """What an operator must hear before serving (printed to stderr at startup)."""
    out = []
    if not is_loopback(cfg.host) and not cfg.tls_cert:
        out.append(
            f"serving {cfg.host} without TLS: the token and every observation and action cross the network in "
            "clear text, readable and replayable by anyone on the path. Use --tls_cert/--tls_key, or bind "
            "127.0.0.1 and reach it through an SSH tunnel or a TLS-terminating proxy (docs/serving.md, Security)"
        )
    if any(a == "--token" or a.startswith("--token=") for a in argv):
        out.append(f"--token on the command line is visible to every local user (ps); prefer --token_file or ${TOKEN_ENV}")
    return out


def return_large_buffers_to_the_os(threshold: int = 1 << 20) -> bool:
    """glibc: allocate buffers >= ``threshold`` with mmap, always. By default glibc raises
    its mmap threshold after the first large buffer is freed (up to 32 MiB), so request
    buffers then come from the per-thread heaps and are never given back: a burst of
    large requests left the server's RSS at its peak. Measured in docs/serving.md."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_MMAP_THRESHOLD = -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc
        return False


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
    for line in security_warnings(cfg, argv):
        print(f"chunkwise serve: WARNING: {line}", file=sys.stderr, flush=True)
    return_large_buffers_to_the_os()
    try:
        running = start_server(cfg)
    except (ValueError, RuntimeError) as e:
        if cfg.openpi_port < 0:
            raise
        # --openpi_keys that do not fit the policy's spec, websockets missing, port taken
        print(f"chunkwise serve: error: {e}", file=sys.stderr)
        return 2
    md = running.service.metadata
    n_tokens = len(cfg.tokens())
    print(
        f"chunkwise serve: listening on {cfg.host}:{running.port} policy={md.policy_type} "
        f"chunk_size={md.chunk_size} action_dim={md.action_dim} max_batch_size={cfg.max_batch_size} "
        f"tls={'on' if cfg.tls_cert else 'off'} token={'on' if n_tokens else 'off'}"
        + (f" ({n_tokens} credentials)" if n_tokens > 1 else "")
        + (f" openpi=ws{'s' if cfg.tls_cert else ''}://{cfg.host}:{running.openpi.port}" if running.openpi else ""),
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

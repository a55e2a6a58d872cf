"""The openpi websocket protocol beside gRPC: ``chunkwise serve --openpi_port=8000``.

Clients written for openpi (``openpi_client.websocket_client_policy.WebsocketClientPolicy``,
usually wrapped in ``ActionChunkBroker``; LIBERO, ALOHA and DROID eval scripts) connect
unchanged. The protocol, as openpi's client speaks it:

    connect (ws://host:port, header ``Authorization: Api-Key <token>`` if a key is set)
    server -> binary frame: msgpack-numpy metadata dict
    client -> binary frame: observation dict      server -> {"actions": (H, A), "server_timing": {...}}
    ...                                             (strictly one reply per request, in order)
    server -> text frame with the error, then close (any bad request; only that connection)
    GET /healthz -> 200 OK (no websocket)

What chunkwise adds behind the same bytes: every connection's requests go through the
service's batcher (one forward pass for many connections, together with gRPC clients),
sessions (one per connection; ``{"__ctrl__": "episode_start"}`` starts a new episode),
the in-flight byte budget, request deadline, token check (the same tokens as gRPC; a
failed attempt counts against the address as in gRPC), message size limit and an idle
timeout. openpi observation keys are mapped to the policy's (``OpenpiKeys``); state is
cast to float32 (openpi clients often send float64) and CHW images are accepted.
A prefix-aware client may add ``"chunkwise/action_context"`` (N, A) and
``"chunkwise/delay"``; plain openpi clients never send them and keep working.

Threads: one asyncio event loop (its own thread) owns the sockets. A request is decoded
and run on that loop while it is the only open connection (no thread hand-off: the
1-client latency of openpi's own server); with more connections it runs on a thread pool
so that the batcher can gather requests from all of them.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import itertools
import logging
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Mapping

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from chunkwise.serving.batcher import WorkItem
from chunkwise.serving.limits import AuthLimiter
from chunkwise.serving.service import PolicyService
from chunkwise.serving.sessions import Owner, ServingError
from chunkwise.types import OBS_IMAGE_PREFIX, OBS_STATE, TASK, Prefix
from chunkwise.wire import chunkwise_pb2 as pb
from chunkwise.wire.codec import clip
from chunkwise.wire.msgpack_numpy import MsgpackNumpyError, Packer, packb, unpackb

log = logging.getLogger(__name__)
CONTEXT_KEY = "chunkwise/action_context"
DELAY_KEY = "chunkwise/delay"
CTRL_KEY = "__ctrl__"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_F32 = np.dtype(np.float32)
# openpi's LIBERO client keys; images go to the policy's cameras in spec order.
FAST_PATH = "/chunkwise.v1"  # the same port, chunkwise's own typed messages (``_fast_handler``)
DEFAULT_OPENPI_KEYS = ("observation/state", "observation/image", "observation/wrist_image", "prompt")


@dataclass(frozen=True)
class OpenpiKeys:
    """openpi observation key -> the policy's key ("" = accepted and ignored)."""

    mapping: Mapping[str, str]

    @classmethod
    def for_spec(cls, spec: Mapping[str, Any], text: str = "") -> "OpenpiKeys":
        """LIBERO-style defaults for ``spec``, then ``text`` (``a=b,c=d``) on top. The
        policy's own keys are accepted as they are."""
        cameras = sorted(k for k in spec if k.startswith(OBS_IMAGE_PREFIX))
        mapping: dict[str, str] = {k: k for k in spec}
        mapping[TASK] = TASK
        if OBS_STATE in spec:
            mapping["observation/state"] = OBS_STATE
        for openpi_key, cam in zip(("observation/image", "observation/wrist_image"), cameras):
            mapping[openpi_key] = cam
        mapping["prompt"] = TASK
        for part in filter(None, (p.strip() for p in text.split(","))):
            src, eq, dst = part.partition("=")
            src, dst = src.strip(), dst.strip()
            if not eq or not src:
                raise ValueError(f"--openpi_keys entry {part!r} must look like openpi_key=policy_key")
            if dst and dst != TASK and dst not in spec:
                raise ValueError(
                    f"--openpi_keys maps {src!r} to {dst!r}, which is not in the policy's observation spec "
                    f"({', '.join(sorted(spec))}); use {src}= to ignore the key"
                )
            mapping[src] = dst
        return cls(mapping)

    def check_complete(self, spec: Mapping[str, Any]) -> None:
        missing = [k for k in spec if k not in self.mapping.values()]
        if missing:
            raise ValueError(f"no openpi key maps to the policy's {missing}; add --openpi_keys=<openpi key>={missing[0]}")


@dataclass
class OpenpiConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    keys: str = ""  # extra openpi_key=policy_key pairs (OpenpiKeys)
    tls_cert: str = ""
    tls_key: str = ""
    pool_workers: int = 64  # threads running requests while several connections are open

    def __post_init__(self) -> None:
        if not (0 <= self.port < 65536):
            raise ValueError(f"openpi port must be in 0..65535, got {self.port}")
        if self.pool_workers < 1:
            raise ValueError(f"pool_workers must be >= 1, got {self.pool_workers}")


class _Reject(Exception):
    """A request that ends its connection: ``message`` goes out as a text frame."""

    def __init__(self, message: str, code: int = 1008) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _all_finite(arr: np.ndarray) -> bool:
    # A NaN or inf anywhere makes the sum NaN or inf, so a finite sum proves every value
    # finite at the cost of one reduction; only a non-finite sum (maybe a mere overflow)
    # needs the element-wise check.
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(arr.sum()):
            return True
    return bool(np.isfinite(arr).all())


def _as_float32(name: str, value: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    if type(value) is np.ndarray and value.dtype == _F32 and (shape is None or value.shape == shape):
        if not _all_finite(value):  # the usual case: float32 of the right shape, no copy
            raise ServingError(_INVALID, f"{name} contains NaN or inf")
        return value
    if not isinstance(value, (np.ndarray, list, tuple)) or (isinstance(value, np.ndarray) and value.dtype.kind not in "biuf"):
        raise ServingError(_INVALID, f"{name} must be a numeric array, got {type(value).__name__}"
                           + (f" of dtype {value.dtype.str}" if isinstance(value, np.ndarray) else ""))
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused below
            arr = np.asarray(value, dtype=_F32)
    except (TypeError, ValueError):
        raise ServingError(_INVALID, f"{name} must be a numeric array") from None
    if shape is not None and arr.shape != shape:
        raise ServingError(_INVALID, f"{name} has shape {arr.shape}, expected {shape}")
    if not _all_finite(arr):
        raise ServingError(_INVALID, f"{name} contains NaN or inf (or values beyond float32's range)")
    return arr


class _IdleTimer:
    """Calls ``on_idle`` once nothing happened for ``idle_s``, never during a request.

    One timer per idle period, re-armed from the time of the last request: cheaper than
    ``asyncio.wait_for`` around every ``recv`` (a task per message)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_s: float, on_idle: Any) -> None:
        self._loop, self._idle_s, self._on_idle = loop, idle_s, on_idle
        self.last, self.busy = time.monotonic(), False
        self._handle = loop.call_later(idle_s, self._check)

    def _check(self) -> None:
        quiet = time.monotonic() - self.last
        if self.busy or quiet < self._idle_s:
            self._handle = self._loop.call_later(self._idle_s if self.busy else self._idle_s - quiet, self._check)
            return
        self._on_idle()

    def start(self) -> None:
        self.busy = True

    def finish(self) -> None:
        self.last, self.busy = time.monotonic(), False

    def cancel(self) -> None:
        self._handle.cancel()


class _FastContext:
    """What ``PolicyService._handle`` asks of a gRPC context, for a websocket."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def time_remaining(self) -> None:
        return None  # the server's request_timeout_s applies

    def is_active(self) -> bool:
        return self._ws.state.name == "OPEN"


class OpenpiEndpoint:
    """The websocket server; requests go to ``service`` (shared with the gRPC server)."""

    def __init__(self, service: PolicyService, cfg: OpenpiConfig, credentials: Mapping[str, str] | None = None,
                 limiter: AuthLimiter | None = None) -> None:
        try:
            import websockets  # noqa: F401
        except ImportError:
            raise RuntimeError("--openpi_port needs the websockets and msgpack packages: "
                               "pip install 'chunkwise[openpi]'") from None
        self.service = service
        self.cfg = cfg
        md = service.metadata
        self.spec = dict(md.observation_spec)
        self.keys = OpenpiKeys.for_spec(self.spec, cfg.keys)
        self.keys.check_complete(self.spec)
        self.limits = service.limits
        # The gRPC credentials are "Bearer <token>" -> name; openpi-client sends "Api-Key <token>".
        self._tokens = [(value.split(" ", 1)[1].encode(), name) for value, name in (credentials or {}).items()]
        self._limiter = limiter or AuthLimiter(self.limits.max_auth_failures_per_minute)
        self._pool = futures.ThreadPoolExecutor(max_workers=cfg.pool_workers, thread_name_prefix="chunkwise-ws")
        self._ids = itertools.count(1)
        self.open_connections = 0
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.port = 0
        self._metadata_frame = Packer().pack(self._metadata())
        self._max_context_rows = service._max_context_rows
        self._prefix_length = md.prefix_length

    def _metadata(self) -> dict[str, Any]:
        md = self.service.metadata
        return {
            "server": "chunkwise", "policy_type": md.policy_type, "action_dim": md.action_dim,
            "chunk_size": md.chunk_size, "action_horizon": md.chunk_size, "fps": float(md.fps),
            "prefix_length": md.prefix_length,
            "observation_spec": {k: {"shape": list(v.shape), "dtype": v.dtype} for k, v in self.spec.items()},
            "observation_keys": {k: v for k, v in self.keys.mapping.items() if v},
            "action_context_key": CONTEXT_KEY if md.prefix_length is not None else None,
            "max_batch_size": self.limits.max_batch_size, "max_message_bytes": self.limits.max_message_bytes,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Bind and serve on a background thread; returns the port."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as e:  # noqa: BLE001 - reported to start()
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="chunkwise-openpi", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise RuntimeError(f"could not start the openpi endpoint on {self.cfg.host}:{self.cfg.port}: {failure[0]}")
        return self.port

    async def _open(self) -> None:
        from websockets.asyncio.server import serve

        tls = None
        if self.cfg.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        self._server = await serve(
            self._handler, self.cfg.host, self.cfg.port, ssl=tls, compression=None,
            # A little above the app limit: up to it the client gets a text frame with the
            # sizes; beyond, websockets closes with 1009 before buffering more.
            max_size=self.limits.max_message_bytes + 4096,
            max_queue=2,  # frames buffered per connection beyond the one being served
            process_request=self._process_request,
            ping_interval=self.limits.keepalive_s, ping_timeout=self.limits.keepalive_timeout_s,
            open_timeout=10, close_timeout=2,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 3)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ HTTP

    def _credential(self, request: Any) -> str | None:
        if not self._tokens:
            return "anonymous"
        value = request.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme not in ("Api-Key", "Bearer"):
            return None
        got, found = token.encode(), None
        for expected, name in self._tokens:  # every token compared, in constant time
            if hmac.compare_digest(got, expected):
                found = name
        return found

    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":  # open, as gRPC's health service
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        host = str(connection.remote_address[0]) if connection.remote_address else "unknown"
        wait = self._limiter.locked_for(host)
        if wait > 0:
            return connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS,
                                      f"too many failed key attempts from this address; retry in {wait:.0f} s\n")
        name = self._credential(request)
        if name is None:
            self._limiter.failed(host)
            return connection.respond(http.HTTPStatus.UNAUTHORIZED,
                                      "missing or wrong key (header 'Authorization: Api-Key <token>')\n")
        if self.open_connections >= self.limits.max_streams:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"server already has {self.limits.max_streams} connections (--max_streams)\n")
        connection.chunkwise_credential = name
        return None

    # ------------------------------------------------------------------ websocket

    async def _handler(self, ws: Any) -> None:
        if ws.request is not None and ws.request.path == FAST_PATH:
            await self._fast_handler(ws)
            return
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        addr = ws.remote_address or ("unknown", 0)
        peer = f"ws:{addr[0]}:{addr[1]}"
        owner = Owner(getattr(ws, "chunkwise_credential", "anonymous"), f"ws:{addr[0]}", peer)
        session = f"openpi-{next(self._ids)}"
        state = {"episode": 0, "timestep": 0}
        self.open_connections += 1
        timer = self._idle_timer(loop, ws, peer)
        try:
            try:
                self.service.sessions.reset(session, 0, owner)
            except ServingError as e:
                raise _Reject(e.message, 1013) from None
            await ws.send(self._metadata_frame)
            alive = lambda: ws.state.name == "OPEN"  # noqa: E731
            while True:
                frame = await ws.recv()
                arrival = time.monotonic()
                timer.start()
                if isinstance(frame, str):
                    raise _Reject("expected a binary msgpack frame, got a text frame")
                if self.open_connections <= 1:  # alone: no thread hand-off
                    reply = self._serve(frame, arrival, owner, session, state, alive)
                else:
                    reply = await loop.run_in_executor(
                        self._pool, self._serve, frame, arrival, owner, session, state, alive)
                await ws.send(reply)
                timer.finish()
        except _Reject as r:
            self.service._rejected(ServingError(_INVALID, r.message), peer)
            await self._close_with(ws, r.message, r.code)
        except ConnectionClosed:
            pass
        finally:
            timer.cancel()
            self.open_connections -= 1
            # The session lives and dies with its connection (no one else can name it):
            # dropped now rather than after session_ttl_s, so reconnecting clients never
            # pile up sessions against max_sessions / max_sessions_per_credential.
            table = self.service.sessions
            with table._lock:
                table._drop(session)

    def _idle_timer(self, loop: asyncio.AbstractEventLoop, ws: Any, peer: str) -> _IdleTimer:
        idle_s = self.limits.stream_idle_timeout_s

        def on_idle() -> None:
            msg = f"no request for {idle_s:g} s (--stream_idle_timeout_s); closing"
            self.service._rejected(ServingError(_INVALID, msg), peer)
            loop.create_task(self._close_with(ws, msg, 1000))

        return _IdleTimer(loop, idle_s, on_idle)

    # ------------------------------------------------------------------ fast path

    async def _fast_handler(self, ws: Any) -> None:
        """``chunkwise.v1`` messages over this websocket (``FAST_PATH``): the typed
        protobuf requests of gRPC's ``Stream``, one tag byte in front, answered in order
        by the service's own ``_handle`` (same validation, sessions, batcher); errors are
        in-band (``reply.error``) as on ``Stream`` and the connection stays open.

            connect -> server: PolicyMetadata
            b"R" + ResetRequest        -> ResetReply (or b"E" + Status)
            b"O" + ObservationRequest  -> ChunkReply
        """
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        addr = ws.remote_address or ("unknown", 0)
        peer = f"ws:{addr[0]}:{addr[1]}"
        owner = Owner(getattr(ws, "chunkwise_credential", "anonymous"), f"ws:{addr[0]}", peer)
        ctx = _FastContext(ws)
        self.open_connections += 1
        timer = self._idle_timer(loop, ws, peer)
        try:
            await ws.send(self.service._metadata_msg.SerializeToString())
            while True:
                frame = await ws.recv()
                timer.start()
                if isinstance(frame, str) or not frame:
                    await self._close_with(ws, "expected a binary frame: a tag byte and a chunkwise.v1 message", 1008)
                    return
                arrival = time.monotonic()
                if self.open_connections <= 1:
                    reply = self._fast_serve(frame, arrival, owner, ctx, peer)
                else:
                    reply = await loop.run_in_executor(self._pool, self._fast_serve, frame, arrival, owner, ctx, peer)
                await ws.send(reply)
                timer.finish()
        except ConnectionClosed:
            pass
        finally:
            timer.cancel()
            self.open_connections -= 1

    def _fast_serve(self, frame: bytes, arrival: float, owner: Owner, ctx: "_FastContext", peer: str) -> bytes:
        svc = self.service
        tag, body = frame[:1], frame[1:]
        if tag == b"R":
            try:
                req = pb.ResetRequest.FromString(body)
                sess = svc.sessions.reset(req.session_id, req.episode_id, owner)
            except (DecodeError, ServingError) as e:
                err = e if isinstance(e, ServingError) else ServingError(_INVALID, f"malformed ResetRequest: {clip(e, 120)}")
                svc._rejected(err, peer)
                return b"E" + pb.Status(code=err.code.value[0], message=err.message).SerializeToString()
            return b"R" + pb.ResetReply(session_id=sess.session_id, episode_id=sess.episode_id).SerializeToString()
        n = len(frame)
        request = None
        try:
            if tag != b"O":
                raise ServingError(_INVALID, f"unknown frame tag {tag!r}; expected b'R' (reset) or b'O' (observation)")
            svc.inflight.acquire(n)
            try:
                request = svc._parse(body)
                reply = svc._handle(request, ctx, arrival, owner)
            finally:
                svc.inflight.release(n)
        except Exception as exc:  # noqa: BLE001 - in-band error, as on Stream
            e = exc if isinstance(exc, ServingError) else svc._unexpected(exc, "fast path")
            svc._rejected(e, peer)
            request = request or pb.ObservationRequest()
            reply = pb.ChunkReply(session_id=request.session_id[:256], episode_id=request.episode_id,
                                  first_timestep=request.timestep, request_id=request.request_id,
                                  error=pb.Status(code=e.code.value[0], message=e.message))
        return b"O" + reply.SerializeToString()

    @staticmethod
    async def _close_with(ws: Any, message: str, code: int) -> None:
        """openpi's error convention: the message as a text frame, then close."""
        from websockets.exceptions import ConnectionClosed

        try:
            await ws.send(message)
            await ws.close(code, clip(message, 100))
        except ConnectionClosed:
            pass

    def _serve(self, frame: bytes, arrival: float, owner: Owner, session: str, state: dict, alive: Any) -> bytes:
        """One request -> reply bytes; raises _Reject (the connection then ends)."""
        svc = self.service
        n = len(frame)
        if n > self.limits.max_message_bytes:
            raise _Reject(f"request is {n} bytes; this server accepts at most {self.limits.max_message_bytes} "
                          "(--max_message_bytes)", 1009)
        try:
            svc.inflight.acquire(n)
        except ServingError as e:
            raise _Reject(e.message, 1013) from None
        try:
            t0 = time.perf_counter()
            try:
                msg = unpackb(frame)
            except MsgpackNumpyError as e:
                raise _Reject(f"bad request: {e}") from None
            if not isinstance(msg, dict):
                raise _Reject(f"bad request: expected a msgpack map (observation dict), got {type(msg).__name__}")
            if CTRL_KEY in msg:
                return self._control(msg, owner, session, state)
            try:
                obs, prefix = self._observation(msg)
                state["timestep"] += 1
                svc.sessions.admit(session, state["episode"], state["timestep"], owner)
                item = WorkItem(obs=obs, prefix=prefix, deadline=arrival + svc.request_timeout_s, alive=alive,
                                arrival=arrival)
                pre_ms = 1000 * (time.perf_counter() - t0)
                result = svc.batcher.process(item)
            except ServingError as e:
                raise _Reject(f"{e.code.name}: {e.message}", 1011 if e.code == grpc.StatusCode.INTERNAL else 1008) from None
            except Exception as exc:  # noqa: BLE001 - a bug of ours: one line, not a traceback per request
                e = svc._unexpected(exc, "openpi")
                raise _Reject(e.message, 1011) from None
            self.requests += 1
            infer_ms = 1000 * (time.perf_counter() - t0)
            return packb({
                "actions": result.actions,
                "server_timing": {
                    "infer_ms": infer_ms, "preprocess_ms": pre_ms + result.stack_ms,
                    "queue_wait_ms": result.queue_wait_ms, "model_ms": result.model_ms,
                    "batch_size": result.batch_size,
                },
            })
        finally:
            svc.inflight.release(n)

    def _control(self, msg: dict, owner: Owner, session: str, state: dict) -> bytes:
        ctrl = msg[CTRL_KEY]
        if ctrl == "episode_start":  # a new episode of this connection's session
            try:
                self.service.sessions.reset(session, state["episode"] + 1, owner)
            except ServingError as e:
                raise _Reject(e.message) from None
            state["episode"] += 1
            state["timestep"] = 0
        elif ctrl != "episode_end":
            return packb({"__ack__": "ignored"})
        return packb({"__ack__": ctrl})

    def _observation(self, msg: dict) -> tuple[dict[str, Any], Prefix | None]:
        """openpi dict -> (the policy's observation, prefix); every key and value checked."""
        obs: dict[str, Any] = {}
        prefix_actions, delay = None, 0
        mapping = self.keys.mapping
        for key, value in msg.items():
            if not isinstance(key, str):
                raise ServingError(_INVALID, f"observation keys must be strings, got {type(key).__name__}")
            if key == CONTEXT_KEY:
                prefix_actions = value
                continue
            if key == DELAY_KEY:
                if type(value) is not int and not isinstance(value, np.integer):
                    raise ServingError(_INVALID, f"{DELAY_KEY} must be an int, got {type(value).__name__}")
                delay = int(value)
                if delay < 0:
                    raise ServingError(_INVALID, f"{DELAY_KEY} must be >= 0, got {delay}")
                continue
            target = mapping.get(key)
            if target is None:
                known = ", ".join(sorted(k for k, v in mapping.items() if v))
                raise ServingError(_INVALID, f"unknown observation key {clip(key, 64)} (accepted: {known}; "
                                   "map others with --openpi_keys)")
            if not target:
                continue
            if target in obs:
                raise ServingError(_INVALID, f"observation key {clip(key, 64)} maps to {target!r}, already given")
            obs[target] = self._value(key, target, value)
        missing = [k for k in self.spec if k not in obs]
        if missing:
            need = [next((o for o, p in mapping.items() if p == k and "/" in o), k) for k in missing]
            raise ServingError(_INVALID, f"observation is missing {', '.join(map(repr, need))}")
        obs.setdefault(TASK, "")
        prefix = None
        if prefix_actions is not None:
            a = _as_float32(CONTEXT_KEY, prefix_actions, None)
            ad = self.service.metadata.action_dim
            if a.ndim != 2 or a.shape[1] != ad:
                raise ServingError(_INVALID, f"{CONTEXT_KEY} must have shape (N, {ad}), got {a.shape}")
            if len(a) > self._max_context_rows:
                raise ServingError(_INVALID, f"{CONTEXT_KEY} has {len(a)} rows; at most {self._max_context_rows}")
            n = self._prefix_length
            if n is not None:  # as gRPC: the policy gets at most its prefix_length actions
                prefix = Prefix(actions=(a[:n] if n > 0 else a).copy(), delay=delay)
        return obs, prefix

    def _value(self, key: str, target: str, value: Any) -> Any:
        if target == TASK:
            if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.ndim == 0:
                value = str(value)
            if not isinstance(value, str):
                raise ServingError(_INVALID, f"{clip(key, 64)} must be a string, got {type(value).__name__}")
            if len(value) > self.limits.max_task_chars:
                raise ServingError(_INVALID, f"{clip(key, 64)} is {len(value)} characters; at most "
                                   f"{self.limits.max_task_chars}")
            return value
        feat = self.spec[target]
        if feat.dtype == "uint8":
            if not isinstance(value, np.ndarray) or value.dtype != np.uint8:
                got = value.dtype.str if isinstance(value, np.ndarray) else type(value).__name__
                raise ServingError(_INVALID, f"{clip(key, 64)} must be a uint8 array {feat.shape}, got {got}")
            shape = feat.shape
            if value.shape != shape and len(shape) == 3 and value.shape == (shape[2], shape[0], shape[1]):
                value = np.ascontiguousarray(value.transpose(1, 2, 0))  # CHW (openpi's ALOHA) -> HWC
            if value.shape != shape:
                raise ServingError(_INVALID, f"{clip(key, 64)} has shape {value.shape}, expected {shape}")
            return value
        try:
            return _as_float32(key, value, feat.shape)
        except ServingError as e:  # the client's key, bounded, in the message
            raise ServingError(_INVALID, e.message.replace(key, clip(key, 64), 1)) from None

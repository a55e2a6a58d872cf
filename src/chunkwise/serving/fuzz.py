"""``chunkwise bench fuzz``: fuzzed requests against real ``chunkwise serve`` processes.

Every case is built from the real message types (``ObservationRequest``, ``ResetRequest``,
``MetadataRequest``) and then mutated field by field (session ids, episode ids, timesteps,
dtypes, shapes, data lengths, NaN / inf / huge finite values, float64 action contexts
that overflow float32, many extra keys, long strings, prefix modes, delays) or byte by
byte (truncated, flipped, spliced, random bytes). Cases go out on ``Infer``, on
``Stream`` (several per stream, answered in order), on ``Reset`` and on ``GetMetadata``.
Valid requests are mixed in and must keep working.

Verdicts (each must be 0 for the run to pass):

* crash      -- the server process died, or a call ended with a status the service
                never sends on purpose (UNKNOWN, UNIMPLEMENTED, INTERNAL other than a
                policy failure) -- i.e. an exception escaped a handler;
* hang       -- a call or stream that did not finish within ``--timeout_s``, a stream
                that answered fewer messages than it got, or a failed health check;
* bad_ok     -- an OK reply whose actions are not finite float32 (H, A);
* accepted   -- OK for a request that is certainly invalid (NaN in a policy input, a
                wrong dtype or shape of a spec key, a float64 action context);
* traceback  -- a Python traceback in the server's log.

    chunkwise bench fuzz --n_requests=20000 --seed=0
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chunkwise.wire import chunkwise_pb2 as pb

STATE_DIM, ACTION_DIM, CHUNK, PREFIX = 8, 4, 10, 5
_SVC = "/chunkwise.v1.PolicyService/"
_POLICY_FAILURES = ("policy failed", "policy returned non-finite")
# What the service answers on purpose (anything else means an exception escaped).
EXPECTED_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "ABORTED", "PERMISSION_DENIED",
                  "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "INTERNAL"}
_DTYPES = ["float32", "float64", "float16", "uint8", "int8", "int32", "int64", "bool"]
_BAD_DTYPES = ["object", "<f4", "float32 ", "", "complex128", "U10", "V8", "O", "float" * 40, "\x00", "ḟloat32"]
_CODE_NAMES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
               6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
               10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
               15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
_HUGE = [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, 1e39, 1e300, 5e-324, -0.0]


@dataclass
class FuzzConfig:
    n_requests: int = 20_000  # fuzzed cases in total (split between the policies)
    seed: int = 0
    policies: list[str] = field(default_factory=lambda: ["echo", "mlp"])
    timeout_s: float = 10.0  # a call (or a stream of cases) slower than this is a hang
    stream_batch: int = 16  # cases per Stream
    health_every: int = 200
    output: str = ""  # JSON with every count
    verbose: bool = False

    def __post_init__(self) -> None:
        bad = set(self.policies) - {"echo", "mlp"}
        if bad or not self.policies:
            raise ValueError(f"policies must be a subset of [echo, mlp], got {self.policies}")
        if self.n_requests < 1 or self.timeout_s <= 0 or self.stream_batch < 1 or self.health_every < 1:
            raise ValueError("n_requests, timeout_s, stream_batch and health_every must be positive")


@dataclass
class FuzzResult:
    policy: str = ""
    cases: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    crash: int = 0
    hang: int = 0
    bad_ok: int = 0
    accepted: int = 0
    traceback: int = 0
    valid_failed: int = 0  # unmutated requests that did not get OK (reported, not a verdict)
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.cases > 0 and not (self.crash or self.hang or self.bad_ok or self.accepted or self.traceback)

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {text[:300]}")

    def summary(self) -> str:
        codes = " ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        return (f"fuzz[{self.policy}]: {self.cases} cases in {self.seconds:.1f} s: ok={self.ok} {codes} | "
                f"crash={self.crash} hang={self.hang} bad_ok={self.bad_ok} accepted_invalid={self.accepted} "
                f"traceback={self.traceback} (valid requests not OK: {self.valid_failed})")


# ---------------------------------------------------------------------------- cases


@dataclass
class Case:
    rpc: str  # Infer | Stream | Reset | GetMetadata
    payload: bytes
    invalid: bool = False  # certainly invalid: OK would be a bug
    valid: bool = False  # unmutated: should be OK
    what: str = ""


class CaseMaker:
    def __init__(self, rng: np.random.Generator, policy: str) -> None:
        self.rng = rng
        self.policy = policy
        self.t = 0
        self.valid_sessions = [f"fz-valid-{i}" for i in range(4)]
        self.play_sessions = [f"fz-play-{i}" for i in range(8)]

    def _ts(self) -> int:
        self.t += 1
        return self.t

    def _state(self) -> np.ndarray:
        return self.rng.standard_normal(STATE_DIM).astype(np.float32)

    def _request(self, session: str) -> pb.ObservationRequest:
        from chunkwise.wire.codec import encode_request

        ctx = self.rng.standard_normal((PREFIX, ACTION_DIM)).astype(np.float32) if self.rng.random() < 0.5 else None
        return encode_request({"observation.state": self._state(), "task": "fuzz"}, session_id=session, episode_id=0,
                              timestep=self._ts(), action_context=ctx, estimated_delay=int(self.rng.integers(0, 4)),
                              request_id=int(self.rng.integers(1, 2**63)))

    def _text(self) -> str:
        r = self.rng
        n = int(r.choice([0, 1, 8, 64, 300, 5000, 100_000]))
        if r.random() < 0.3:
            return "".join(chr(int(c)) for c in r.integers(0x20, 0x2FFF, size=min(n, 2000)))
        return "x" * n

    def _tensor(self, t: pb.Tensor) -> str:
        """Mutate one tensor; returns what was done."""
        r = self.rng
        k = int(r.integers(0, 8))
        if k == 0:
            t.dtype = str(r.choice(_BAD_DTYPES))
            return "bad dtype"
        if k == 1:
            dt = str(r.choice(_DTYPES))
            size = math.prod(t.shape) if len(t.shape) else 1
            size = size if 0 <= size <= 4096 else STATE_DIM  # an earlier mutation may have broken the shape
            t.dtype = dt
            t.data = r.bytes(size * np.dtype(dt).itemsize)
            return f"dtype {dt}"
        if k == 2:
            choice = int(r.integers(0, 5))
            shapes = [[-1], [2**40, 2**40], list(r.integers(1, 3, size=9)), [0], [STATE_DIM, 1]]
            t.shape[:] = [int(x) for x in shapes[choice]]
            return "bad shape"
        if k == 3:
            cut = int(r.integers(0, max(1, len(t.data))))
            t.data = t.data[:cut] if r.random() < 0.5 else t.data + r.bytes(int(r.integers(1, 64)))
            return "data length"
        if k in (4, 5) and t.dtype == "float32" and len(t.data) % 4 == 0 and len(t.data):
            arr = np.frombuffer(t.data, np.float32).copy()
            with np.errstate(over="ignore"):
                v = float(np.float32(r.choice(_HUGE)))  # 1e39 -> inf
            arr[int(r.integers(0, arr.size))] = v
            t.data = arr.tobytes()
            return f"value {v}"
        if k == 6:
            t.data = r.bytes(len(t.data))  # random floats: NaN possible, huge likely
            return "random bytes"
        t.Clear()
        return "cleared"

    def observation_case(self) -> Case:
        r = self.rng
        if r.random() < 0.15:  # an unmutated request on a session nobody else touches
            rpc = "Infer" if r.random() < 0.5 else "Stream"  # (streams are sent in batches: own sessions)
            req = self._request(self.valid_sessions[int(r.integers(0, 2)) + (2 if rpc == "Stream" else 0)])
            return Case(rpc, req.SerializeToString(), valid=True, what="valid")
        # Infer cases run at once, Stream cases in batches later: each has its own sessions,
        # so timesteps stay increasing per session and mutations reach the decoder.
        rpc = "Infer" if r.random() < 0.5 else "Stream"
        req = self._request(self.play_sessions[int(r.integers(0, 4)) + (4 if rpc == "Stream" else 0)])
        whats: list[str] = []
        for _ in range(int(r.integers(1, 4))):
            k = int(r.integers(0, 15))
            if k == 0:
                req.session_id = self._text()[:20000] if r.random() < 0.5 else str(r.choice([req.session_id, ""]))
                whats.append("session_id")
            elif k == 1:
                req.episode_id = int(r.choice([-1, 1, 2**62, -(2**63)]))
                whats.append("episode_id")
            elif k == 2:
                if r.random() < 0.2:  # accepted once, then that session is used up
                    req.session_id, req.timestep = "fz-huge", 2**63 - 1
                else:  # never after the session's last timestep (except a first 0)
                    req.timestep = int(r.choice([-5, 0, -(2**63)]))
                whats.append("timestep")
            elif k in (3, 4):
                w = self._tensor(req.observation["observation.state"])
                whats.append(f"state {w}")
            elif k == 5:
                if "observation.state" in req.observation:
                    del req.observation["observation.state"]
                whats.append("missing state")
            elif k == 6:
                n = int(r.choice([1, 8, 9, 50, 3000]))
                for i in range(n):
                    req.observation[f"extra.{i}"].dtype = "float32"
                whats.append(f"{n} extra keys")
            elif k == 7:
                ctx = req.action_context
                choice = int(r.integers(0, 6))
                if choice == 0:  # float64 that overflows float32
                    arr = np.full((PREFIX, ACTION_DIM), float(r.choice([1e39, 1e300, -1e39])), np.float64)
                    ctx.Clear()
                    ctx.dtype, ctx.data = "float64", arr.tobytes()
                    ctx.shape.extend(arr.shape)
                elif choice == 1:
                    ctx.Clear()
                    ctx.dtype = "float32"
                    ctx.shape.extend([10**6, ACTION_DIM])
                elif choice == 2:
                    arr = np.zeros((PREFIX, ACTION_DIM + 1), np.float32)
                    ctx.Clear()
                    ctx.dtype, ctx.data = "float32", arr.tobytes()
                    ctx.shape.extend(arr.shape)
                elif choice == 3:
                    arr = np.zeros((0, ACTION_DIM), np.float32)
                    ctx.Clear()
                    ctx.dtype = "float32"
                    ctx.shape.extend(arr.shape)
                else:
                    if not req.HasField("action_context"):
                        arr = np.zeros((PREFIX, ACTION_DIM), np.float32)
                        ctx.dtype, ctx.data = "float32", arr.tobytes()
                        ctx.shape.extend(arr.shape)
                    w = self._tensor(ctx)
                whats.append(f"action_context {choice}")
            elif k == 8:
                req.estimated_delay = int(r.choice([-1, 2**31 - 1, 1000]))
                whats.append("estimated_delay")
            elif k == 9:
                req.prefix_mode = str(r.choice(["rtc_trained", "nope", "", "m" * 5000]))
                whats.append("prefix_mode")
            elif k == 10:
                req.task = self._text()
                whats.append("task")
            elif k == 11:
                req.request_id, req.must_go = int(r.integers(0, 2**64, dtype=np.uint64)), bool(r.random() < 0.5)
                whats.append("ids")
            elif k == 12:
                key = self._text()[:3000] or "k"
                req.observation[key].dtype = str(r.choice(_BAD_DTYPES))
                whats.append("odd key")
            elif k == 13:
                req.observation["observation.state"].CopyFrom(pb.Tensor())
                whats.append("empty state tensor")
            else:  # finite but huge: valid input; the MLP's output overflows to NaN
                big = np.full(STATE_DIM, float(r.choice([3.4e38, -3.4e38, 1e30])), np.float32)
                req.observation["observation.state"].data = big.tobytes()
                whats.append("huge finite state")
        payload = req.SerializeToString()
        if r.random() < 0.2:
            payload, w = self._bytes(payload)
            whats.append(w)
        return Case(rpc, payload, invalid=certainly_invalid(payload),
                    what=", ".join(whats))

    def _bytes(self, payload: bytes) -> tuple[bytes, str]:
        r = self.rng
        k = int(r.integers(0, 6))
        if k == 0 and payload:
            return payload[: int(r.integers(0, len(payload)))], "truncated"
        if k == 1 and payload:
            b = bytearray(payload)
            for _ in range(int(r.integers(1, 8))):
                b[int(r.integers(0, len(b)))] = int(r.integers(0, 256))
            return bytes(b), "flipped"
        if k == 2:
            return payload + payload, "doubled"
        if k == 3:
            return r.bytes(int(r.choice([0, 1, 13, 500]))), "random bytes"
        if k == 4 and payload:
            i = int(r.integers(0, len(payload)))
            return payload[:i] + r.bytes(int(r.integers(1, 32))) + payload[i:], "spliced"
        return b"\xff" * int(r.integers(1, 64)), "0xff"

    def reset_case(self) -> Case:
        r = self.rng
        req = pb.ResetRequest(session_id=f"fz-reset-{int(r.integers(0, 16))}", episode_id=int(r.integers(0, 5)))
        if r.random() < 0.3:
            req.session_id = self._text()[:1000]
        if r.random() < 0.3:
            req.episode_id = int(r.choice([-(2**63), 2**63 - 1, -1]))
        payload = req.SerializeToString()
        if r.random() < 0.4:
            payload, _ = self._bytes(payload)
        return Case("Reset", payload, what="reset")

    def metadata_case(self) -> Case:
        payload = b"" if self.rng.random() < 0.3 else self._bytes(pb.MetadataRequest().SerializeToString())[0]
        return Case("GetMetadata", payload, what="metadata")

    def next(self) -> Case:
        u = self.rng.random()
        if u < 0.08:
            return self.reset_case()
        if u < 0.12:
            return self.metadata_case()
        return self.observation_case()


def certainly_invalid(payload: bytes) -> bool:
    """An independent reading of the protocol: does this request break an input rule?
    (Session rules are not judged here: the fuzzer does not track the server's sessions.)"""
    try:
        req = pb.ObservationRequest.FromString(payload)
    except Exception:  # noqa: BLE001 - unparseable
        return True

    def bad_tensor(t: pb.Tensor, shape_ok: Any) -> bool:
        if t.dtype != "float32" or len(t.shape) > 8 or any(d < 0 for d in t.shape):
            return True
        if len(t.data) != 4 * math.prod(t.shape) or not shape_ok(tuple(t.shape)):
            return True
        return not np.isfinite(np.frombuffer(t.data, np.float32)).all()

    obs = req.observation
    if "observation.state" not in obs or bad_tensor(obs["observation.state"], lambda s: s == (STATE_DIM,)):
        return True
    if len(obs) > 1 + 8 or len(req.task) > 4096 or req.prefix_mode:
        return True
    if req.HasField("action_context"):
        if bad_tensor(req.action_context, lambda s: len(s) == 2 and s[1] == ACTION_DIM and s[0] <= 4 * CHUNK):
            return True
        if req.estimated_delay < 0:
            return True
    return False


# ---------------------------------------------------------------------------- judging


def _judge_reply(res: FuzzResult, case: Case, code: str, message: str, reply: pb.ChunkReply | None) -> None:
    res.cases += 1
    if code == "OK":
        res.ok += 1
        if reply is not None:
            a = reply.actions
            bad = ""
            if a.dtype != "float32" or list(a.shape) != [CHUNK, ACTION_DIM] or len(a.data) != CHUNK * ACTION_DIM * 4:
                bad = f"actions {a.dtype} {list(a.shape)} {len(a.data)} bytes"
            elif not np.isfinite(np.frombuffer(a.data, np.float32)).all():
                bad = "non-finite actions with OK"
            if bad:
                res.note("bad_ok", f"{bad} for {case.what}")
            elif case.invalid:
                res.note("accepted", f"OK for invalid request ({case.what})")
        return
    res.statuses[code] = res.statuses.get(code, 0) + 1
    if case.valid and code not in ("RESOURCE_EXHAUSTED", "INTERNAL"):
        res.valid_failed += 1
        if len(res.examples) < 20:
            res.examples.append(f"valid request got {code}: {message[:200]}")
    if code not in EXPECTED_CODES or (code == "INTERNAL" and not message.startswith(_POLICY_FAILURES)):
        res.note("crash", f"{code}: {message} ({case.rpc}: {case.what})")
    elif code == "DEADLINE_EXCEEDED":
        res.note("hang", f"{case.rpc}: {case.what}: {message}")


def _run_cases(address: str, cases: list[Case], cfg: FuzzConfig, res: FuzzResult) -> None:
    import grpc

    from chunkwise.clients.remote_policy import make_channel

    ch = make_channel(address)
    try:
        unary = {name: ch.unary_unary(_SVC + name) for name in ("Infer", "Reset", "GetMetadata")}
        stream = ch.stream_stream(_SVC + "Stream")
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(ch)
        for name in ("fz-huge", *[f"fz-valid-{i}" for i in range(4)], *[f"fz-play-{i}" for i in range(8)]):
            unary["Reset"](pb.ResetRequest(session_id=name, episode_id=0).SerializeToString(), timeout=cfg.timeout_s)
        pending: list[Case] = []
        done = 0

        def flush_stream() -> None:
            if not pending:
                return
            batch = list(pending)
            pending.clear()
            got: list[pb.ChunkReply] = []
            try:
                for raw in stream(iter([c.payload for c in batch]), timeout=cfg.timeout_s):
                    got.append(pb.ChunkReply.FromString(raw))
            except grpc.RpcError as e:
                code = e.code().name
                if code == "DEADLINE_EXCEEDED" or len(got) < len(batch):
                    res.note("hang" if code == "DEADLINE_EXCEEDED" else "crash",
                             f"stream of {len(batch)} ended after {len(got)} replies: {code}: {e.details()}")
                res.cases += len(batch) - len(got)
            for c, reply in zip(batch, got):
                if reply.error.code:
                    code = _CODE_NAMES.get(reply.error.code, f"code {reply.error.code}")
                    _judge_reply(res, c, code, reply.error.message, None)
                else:
                    _judge_reply(res, c, "OK", "", reply)

        for case in cases:
            if case.rpc == "Stream":
                pending.append(case)
                if len(pending) >= cfg.stream_batch:
                    flush_stream()
            else:
                try:
                    raw = unary[case.rpc](case.payload, timeout=cfg.timeout_s)
                    reply = pb.ChunkReply.FromString(raw) if case.rpc == "Infer" else None
                    _judge_reply(res, case, "OK", "", reply)
                except grpc.RpcError as e:
                    _judge_reply(res, case, e.code().name, e.details() or "", None)
            done += 1
            if done % cfg.health_every == 0:
                flush_stream()
                try:
                    st = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                    if st.status != health_pb2.HealthCheckResponse.SERVING:
                        res.note("hang", f"health: {st.status}")
                except grpc.RpcError as e:
                    res.note("hang", f"health check failed: {e.code().name}")
        flush_stream()
    finally:
        ch.close()


def server_args(policy: str) -> list[str]:
    common = [f"--policy.state_dim={STATE_DIM}", f"--policy.action_dim={ACTION_DIM}",
              f"--policy.chunk_size={CHUNK}", "--max_message_bytes=1048576", "--max_inflight_bytes=16777216",
              "--log_level=INFO"]
    if policy == "echo":
        return ["--policy.type=echo", f"--policy.prefix_length={PREFIX}", *common]
    return ["--policy.type=mlp", "--policy.hidden=32", *common]


def run_fuzz(cfg: FuzzConfig) -> list[FuzzResult]:
    from chunkwise.serving.process import ServerProcess

    out = []
    per = max(1, cfg.n_requests // len(cfg.policies))
    for i, policy in enumerate(cfg.policies):
        rng = np.random.default_rng([cfg.seed, i])
        maker = CaseMaker(rng, policy)
        cases = [maker.next() for _ in range(per)]
        res = FuzzResult(policy=policy)
        t0 = time.monotonic()
        with ServerProcess(server_args(policy), lifetime_s=max(300.0, per * 0.05)) as srv:
            try:
                _run_cases(srv.address, cases, cfg, res)
            finally:
                alive = srv.proc is not None and srv.proc.poll() is None
            if not alive:
                res.note("crash", f"server process exited with {srv.proc.returncode if srv.proc else None}")
        res.seconds = time.monotonic() - t0
        log_text = "\n".join(srv.output)
        res.traceback = log_text.count("Traceback (most recent call last)")
        if res.traceback:
            i = log_text.index("Traceback")
            res.examples.append("traceback in server log: " + log_text[i:i + 600])
        res.examples.append(f"server log: {len(srv.output)} lines")
        out.append(res)
    return out


def main(argv: list[str]) -> int:
    from chunkwise.serving.server import parse_config

    cfg = parse_config(FuzzConfig, argv, "bench fuzz")
    if cfg is None:
        return 2
    results = run_fuzz(cfg)
    for r in results:
        print(r.summary())
        if cfg.verbose or not r.passed:
            for e in r.examples:
                print("   ", e)
    ok = all(r.passed for r in results)
    print(f"fuzz passed: {ok}")
    if cfg.output:
        path = Path(cfg.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(r) | {"passed": r.passed} for r in results], indent=2))
        print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

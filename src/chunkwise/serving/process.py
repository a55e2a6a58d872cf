"""Run ``chunkwise serve`` as a child process (tests, benchmarks): start, wait, kill.

    with ServerProcess(["--policy.type=echo"]) as srv:
        policy = RemotePolicy(srv.address)

The server binds port 0 (a free port) unless ``--port`` is given and reports the real
one on its first stdout line; ``lifetime_s`` bounds how long it may live even if the
parent forgets to stop it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_LISTEN = re.compile(r"listening on (\S+):(\d+)")


class ServerProcess:
    def __init__(
        self,
        args: list[str],
        *,
        host: str = "127.0.0.1",
        lifetime_s: float = 300.0,
        startup_timeout_s: float = 60.0,
        env: dict[str, str] | None = None,
        nice: int = 0,
    ) -> None:
        self.args = list(args)
        if not any(a.startswith("--port") for a in self.args):
            self.args.append("--port=0")
        if not any(a.startswith("--host") for a in self.args):
            self.args.append(f"--host={host}")
        self.host = host
        self.lifetime_s = lifetime_s
        self.startup_timeout_s = startup_timeout_s
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.nice = nice
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.output: list[str] = []
        self._timer: threading.Timer | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "ServerProcess":
        cmd = [sys.executable, "-m", "chunkwise.cli", "serve", *self.args]
        if self.nice:
            cmd = ["nice", "-n", str(self.nice), *cmd]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env
        )
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        t_end = time.monotonic() + self.startup_timeout_s
        assert self.proc.stdout is not None
        while time.monotonic() < t_end:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip())
            m = _LISTEN.search(line)
            if m:
                self.port = int(m.group(2))
                break
        if not self.port:
            self.stop()
            raise RuntimeError("chunkwise serve did not start:\n" + "\n".join(self.output))
        # Keep draining stdout so the child never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.wait_healthy(t_end - time.monotonic())
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())

    def wait_healthy(self, timeout_s: float) -> None:
        with grpc.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=max(timeout_s, 1.0), wait_for_ready=True)
            if resp.status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"server at {self.address} is not SERVING: {resp.status}")

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self._timer is not None:
            self._timer.cancel()
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout_s)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Bare gRPC echo (benchmark transport floor; outside the chunkwise package).

One unary method, no protobuf parsing: request bytes in, ``reply_bytes`` zero bytes out.
Same grpc Python server type and thread pool as chunkwise's PolicyServer, so the
difference to it is chunkwise's own work (parsing, validation, batching, encoding).

    python benchmarks/echo_server.py --port=0 --reply_bytes=400
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures

import grpc

METHOD = "/bench.Echo/Echo"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reply_bytes", type=int, default=400)
    args = ap.parse_args()
    reply = b"\0" * args.reply_bytes

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return reply

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=96),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening on port {port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    server.stop(0)


def make_client(address: str):  # noqa: ANN201
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary(METHOD)
    return channel, call


if __name__ == "__main__":
    main()

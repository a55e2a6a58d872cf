"""Bare gRPC echo (benchmark transport floor; outside the chunkwise package).

One unary method, no protobuf parsing: request bytes in, ``reply_bytes`` zero bytes out.
Same grpc Python server type and thread pool as chunkwise's PolicyServer, so the
difference to it is chunkwise's own work (parsing, validation, batching, encoding).

    python benchmarks/echo_server.py --port=0 --reply_bytes=400
"""

from __future__ import annotations

import argparse

import grpc

METHOD = "/bench.Echo/Echo"


def main() -> None:
    from _common import serve_unary_until_sigterm  # script dir is on sys.path when run

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--reply_bytes", type=int, default=400)
    args = ap.parse_args()
    reply = b"\0" * args.reply_bytes

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return reply

    serve_unary_until_sigterm("bench.Echo", "Echo", echo, args.port)


def make_client(address: str):  # noqa: ANN201
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    call = channel.unary_unary(METHOD)
    return channel, call


if __name__ == "__main__":
    main()

"""openpi serving pattern (websocket + msgpack-numpy), reproduced for benchmarking.

Outside the chunkwise package. Server: on connect send msgpack metadata; each binary
frame is a msgpack-numpy observation dict; the policy runs inside the event loop (so
requests are served one at a time, batch size 1) and the reply adds ``server_timing``;
errors go back as a text frame. Client: ``openpi_client.websocket_client_policy.
WebsocketClientPolicy`` from the ``openpi-client`` PyPI package. The server's msgpack
helpers are ``openpi_client.msgpack_numpy`` too, so both ends use openpi's own encoding.
openpi-client pins numpy<2 and so is usually not installed beside chunkwise: then both
ends use ``chunkwise.wire.msgpack_numpy`` (the same bytes, checked against openpi-client by
tests/serving/test_openpi_client.py) and ``chunkwise.serving.openpi_client``'s client,
which makes the same calls per request as openpi's (pack, send, recv, unpack).

    python benchmarks/openpi_pattern.py --port=0 --model_ms=5 --cameras=0
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import traceback


def main() -> None:
    import websockets.asyncio.server as ws_server

    msgpack_numpy = _codec()

    from _common import parse_policy_args  # script dir is on sys.path when run

    from chunkwise.types import stack_observations

    args, policy = parse_policy_args()
    packer = msgpack_numpy.Packer()

    async def handler(ws) -> None:  # noqa: ANN001
        await ws.send(packer.pack({"policy_type": "mlp", "chunk_size": args.chunk_size}))
        prev_total_ms = None
        while True:
            try:
                t0 = time.monotonic()
                obs = msgpack_numpy.unpackb(await ws.recv())
                t1 = time.monotonic()
                actions = policy.predict_chunk(stack_observations([obs]))[0]  # blocks the loop: serial
                infer_ms = 1000 * (time.monotonic() - t1)
                reply = {"actions": actions, "server_timing": {"infer_ms": infer_ms}}
                if prev_total_ms is not None:
                    reply["server_timing"]["prev_total_ms"] = prev_total_ms
                await ws.send(packer.pack(reply))
                prev_total_ms = 1000 * (time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001
                if type(e).__name__.startswith("ConnectionClosed"):
                    return
                await ws.send(traceback.format_exc())
                await ws.close()
                return

    async def serve() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", args.port))
        async with ws_server.serve(handler, sock=sock, compression=None, max_size=None) as srv:
            print(f"listening on port {sock.getsockname()[1]}", flush=True)
            stop = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
            await stop
            srv.close()

    asyncio.run(serve())


def _codec():  # noqa: ANN202
    try:
        from openpi_client import msgpack_numpy
    except ImportError:
        from chunkwise.wire import msgpack_numpy
    return msgpack_numpy


def make_client(address: str):  # noqa: ANN201
    host, port = address.rsplit(":", 1)
    try:
        from openpi_client.websocket_client_policy import WebsocketClientPolicy
    except ImportError:
        from chunkwise.serving.openpi_client import OpenpiWebsocketClient

        return OpenpiWebsocketClient(host, int(port))
    return WebsocketClientPolicy(host=host, port=int(port))


if __name__ == "__main__":
    main()

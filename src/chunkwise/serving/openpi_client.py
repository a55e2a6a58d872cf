"""A client of the openpi websocket protocol, built on chunkwise's own msgpack-numpy codec.

It speaks exactly what ``openpi_client.websocket_client_policy.WebsocketClientPolicy``
speaks (same handshake header, same frames), without depending on openpi-client (whose
numpy<2 pin cannot share chunkwise's environment). Tests and ``chunkwise bench serve`` use
it; robots that already run openpi-client keep theirs.

    c = OpenpiWebsocketClient("127.0.0.1", 8000)
    out = c.infer({"observation/state": state, "observation/image": img, "prompt": "push"})
    out["actions"]  # (H, A) float32
"""

from __future__ import annotations

from typing import Any

from chunkwise.wire.msgpack_numpy import Packer, unpackb


class OpenpiServerError(RuntimeError):
    """The server answered with a text frame (openpi's error convention)."""


class OpenpiWebsocketClient:
    def __init__(self, host: str, port: int | None = None, api_key: str | None = None,
                 open_timeout_s: float = 10.0, ssl_context: Any = None) -> None:
        """``host`` may be a full ``ws://`` / ``wss://`` URI; ``ssl_context`` for ``wss``."""
        from websockets.sync.client import connect

        uri = host if host.startswith("ws") else f"ws://{host}"
        if port is not None:
            uri += f":{port}"
        headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
        self._packer = Packer()
        self._ws = connect(uri, compression=None, max_size=None, additional_headers=headers,
                           open_timeout=open_timeout_s, ssl=ssl_context)
        # websockets >= 17.1 warns unless `with connect(...)` is used; this object owns and
        # closes the connection (close()), as openpi's client does.
        self._ws.pending_legacy_warning = False
        self.metadata = unpackb(self._ws.recv())

    def _reply(self) -> Any:
        response = self._ws.recv()
        if isinstance(response, str):
            raise OpenpiServerError(response)
        return unpackb(response)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self._ws.send(self._packer.pack(obs))
        return self._reply()

    def send_raw(self, frame: bytes | str) -> Any:
        """Send any frame (tests of bad input); returns the decoded reply or raises."""
        self._ws.send(frame)
        return self._reply()

    def episode_start(self, task: str = "", episode_id: int = -1) -> dict[str, Any]:
        self._ws.send(self._packer.pack({"__ctrl__": "episode_start", "__experiment__": "", "__task__": task,
                                         "__episode_id__": episode_id}))
        return self._reply()

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> "OpenpiWebsocketClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FastWebsocketClient:
    """chunkwise's own typed messages over a websocket (the ``/chunkwise.v1`` path of the
    ``--openpi_port``): ``ObservationRequest`` in, ``ChunkReply`` out, as on gRPC's
    ``Stream``, without gRPC's per-message machinery.

        c = FastWebsocketClient("127.0.0.1", port)
        c.reset("robot-1", 0)
        reply = c.infer(encode_request(obs, session_id="robot-1", episode_id=0, timestep=t))
    """

    def __init__(self, host: str, port: int | None = None, token: str | None = None,
                 open_timeout_s: float = 10.0, ssl_context: Any = None) -> None:
        from websockets.sync.client import connect

        from chunkwise.wire import chunkwise_pb2 as pb

        self._pb = pb
        uri = host if host.startswith("ws") else f"ws://{host}"
        if port is not None:
            uri += f":{port}"
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._ws = connect(uri + "/chunkwise.v1", compression=None, max_size=None, additional_headers=headers,
                           open_timeout=open_timeout_s, ssl=ssl_context)
        self._ws.pending_legacy_warning = False  # closed by close()
        first = self._ws.recv()
        if isinstance(first, str):
            raise OpenpiServerError(first)
        self.metadata = pb.PolicyMetadata.FromString(first)

    def _recv(self) -> bytes:
        frame = self._ws.recv()
        if isinstance(frame, str):
            raise OpenpiServerError(frame)
        return frame

    def reset(self, session_id: str, episode_id: int) -> Any:
        self._ws.send(b"R" + self._pb.ResetRequest(session_id=session_id, episode_id=episode_id).SerializeToString())
        frame = self._recv()
        if frame[:1] == b"E":
            raise OpenpiServerError(self._pb.Status.FromString(frame[1:]).message)
        return self._pb.ResetReply.FromString(frame[1:])

    def infer(self, request: Any) -> Any:
        """``ObservationRequest`` -> ``ChunkReply`` (check ``reply.error.code``)."""
        self._ws.send(b"O" + request.SerializeToString())
        return self._pb.ChunkReply.FromString(self._recv()[1:])

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> "FastWebsocketClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

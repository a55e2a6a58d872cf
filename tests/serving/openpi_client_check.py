"""Runs inside .venv-openpi (the real openpi-client, numpy<2; chunkwise is not installed).

    .venv-openpi/bin/python tests/serving/openpi_client_check.py PORT CASES.msgpack

CASES.msgpack (written by test_openpi_client.py with chunkwise's codec) is a map:
``codec``: a list of packed values; ``observations``: a list of openpi observation dicts.
Prints one JSON object: openpi's re-encoding of every codec case (hex), the metadata,
the actions an ``ActionChunkBroker`` over ``WebsocketClientPolicy`` executed, the batch
sizes 32 concurrent clients saw, and the error a bad request got.
"""

import json
import sys
import threading

import numpy as np
from openpi_client import msgpack_numpy
from openpi_client.action_chunk_broker import ActionChunkBroker
from openpi_client.websocket_client_policy import WebsocketClientPolicy


def main() -> None:
    port = int(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        cases = msgpack_numpy.unpackb(f.read())
    out = {"numpy": np.__version__}
    # every value chunkwise packed, decoded and packed again by openpi's own codec
    out["codec"] = [msgpack_numpy.packb(msgpack_numpy.unpackb(raw)).hex() for raw in cases["codec"]]

    policy = WebsocketClientPolicy(host="127.0.0.1", port=port)
    md = policy.get_server_metadata()
    out["metadata"] = {k: md[k] for k in ("server", "chunk_size", "action_dim")}
    horizon = md["chunk_size"]
    broker = ActionChunkBroker(policy, action_horizon=horizon)
    steps = []
    for o in cases["observations"]:
        steps.append(broker.infer(o)["actions"].tolist())  # one action per step
    out["steps"] = steps

    n, sizes, errors = 32, [], []
    clients = [WebsocketClientPolicy(host="127.0.0.1", port=port) for _ in range(n)]
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(20)
            for t in range(5):
                sizes.append(clients[i].infer(cases["observations"][(i + t) % len(cases["observations"])])
                             ["server_timing"]["batch_size"])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    out["batch_sizes"], out["errors"] = sizes, errors

    bad = dict(cases["observations"][0])
    bad["observation/unknown"] = np.zeros(2)
    try:
        policy.infer(bad)
        out["bad"] = "no error"
    except RuntimeError as e:
        out["bad"] = str(e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

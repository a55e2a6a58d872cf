"""chunkwise.clients: talk to a PolicyServer.

* ``RemotePolicy`` (remote_policy.py): the Policy protocol over the wire.
* ``SimClient`` (sim_client.py): a simulated env in real time (``chunkwise eval --server``).
* ``ChunkClient`` / ``StreamTransport`` / ``RemoteConfig`` (realtime.py): the wall-clock loop.
* ``RobotClient`` (robot_client.py): anything with ``get_observation`` / ``send_action``.
"""

"""chunkwise.clients: talk to a PolicyServer.

* ``RemotePolicy`` (remote_policy.py): the Policy protocol over the wire.
* ``SimClient`` / ``run_eval`` (sim_client.py): a simulated env in real time.
* ``RobotClient`` (robot_client.py): anything with ``get_observation`` / ``send_action``.
"""

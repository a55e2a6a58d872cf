"""chunkwise.serving: the gRPC PolicyServer (``chunkwise serve``), dynamic batching, sessions.

Start one in-process with ``start_server(ServeConfig(...))`` or as a child process with
``ServerProcess([...])``; talk to it with ``chunkwise.clients.RemotePolicy``.
"""

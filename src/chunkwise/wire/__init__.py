"""chunkwise.wire: the ``chunkwise.v1`` protobuf/gRPC protocol and its numpy codec.

``chunkwise_pb2*.py`` are generated from ``chunkwise.proto`` by ``scripts/gen_proto.sh``
and committed (no grpcio-tools needed at run time). No pickle, ever.
"""

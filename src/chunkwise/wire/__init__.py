"""chunkwise.wire"""

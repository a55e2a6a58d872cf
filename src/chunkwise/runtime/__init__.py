"""chunkwise.runtime"""

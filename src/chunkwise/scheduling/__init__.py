"""chunkwise.scheduling"""

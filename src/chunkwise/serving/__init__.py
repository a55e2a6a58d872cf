"""chunkwise.serving"""

"""chunkwise.training"""

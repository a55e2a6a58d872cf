"""chunkwise.eval"""

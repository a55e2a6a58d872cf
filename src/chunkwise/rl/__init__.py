"""chunkwise.rl"""

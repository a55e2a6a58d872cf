"""chunkwise.envs"""

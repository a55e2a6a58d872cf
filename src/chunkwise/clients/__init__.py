"""chunkwise.clients"""

"""chunkwise.data"""

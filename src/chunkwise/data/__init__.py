"""Demonstrations as LeRobot v3.0 datasets: collection, writing, reading as chunk windows.

``ChunkDataset`` and the writer import only numpy/pyarrow; ``collect`` (which pulls in the
simulator) is imported lazily by ``chunkwise collect``.
"""

from chunkwise.data.dataset import ChunkDataset
from chunkwise.data.writer import LeRobotV3Writer


def collect_demonstrations(cfg):  # noqa: ANN001, ANN201 - thin lazy wrapper
    """See ``chunkwise.data.collect.collect_demonstrations``."""
    from chunkwise.data.collect import collect_demonstrations as _collect

    return _collect(cfg)


__all__ = ["ChunkDataset", "LeRobotV3Writer", "collect_demonstrations"]

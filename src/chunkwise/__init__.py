"""chunkwise: run action-chunking robot policies asynchronously.

Layers (imports only point down): types -> wire, scheduling -> runtime -> policies ->
serving/clients -> envs/data/training/rl/eval -> cli. See DESIGN.md in the repository.
"""

import warnings as _warnings
from importlib.metadata import PackageNotFoundError as _NotInstalled, version as _version

try:
    __version__ = _version("chunkwise")
except _NotInstalled:  # run from a source tree that was never installed
    __version__ = "0+unknown"

# numpy < 2.4 warns "The value of the smallest subnormal for <class 'numpy.float32'> type is
# zero." (twice per float type: four lines) when np.finfo(float32/float64) is first built
# while the CPU flushes subnormals to zero. `chunkwise train` turns flush-to-zero on for
# speed (torch.set_flush_denormal, training/train.py), and torch/numpy code inside it is
# what first asks for finfo. The check is an artefact of flush-to-zero (DAZ makes the
# correct, precomputed value compare equal to 0); finfo's values are right. Only the
# warnings numpy raises from its own getlimits module are ignored, not a caller's.
_warnings.filterwarnings(
    "ignore",
    message=r"The value of the smallest subnormal for <class 'numpy\.float",
    category=UserWarning,
    module=r"numpy\.(_core|core)\.getlimits",
)

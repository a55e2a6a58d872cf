"""chunkwise: run action-chunking robot policies asynchronously.

Layers: a module imports only from its own layer or below (tests/test_layering.py checks
every import against this list, and that packages form no cycle)::

    L0: types, contracts, common   observations, metadata, Prefix; Policy, ChunkEnv, capabilities;
                                   one CLI parser, atomic writes
    L1: scheduling, wire           queue, aggregates, trigger, delays, controller; the wire format
    L2: runtime                    the one control loop, virtual clock, strategy registry
    L3: envs, policies             simulators; policy families (each registers itself)
    L4: data, training, rl, serving, clients
    L5: eval, demo, bench, cli     commands and reports
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

"""chunkwise: run action-chunking robot policies asynchronously.

Layers (imports only point down): types -> wire, scheduling -> runtime -> policies ->
serving/clients -> envs/data/training/rl/eval -> cli. See DESIGN.md in the repository.
"""

__version__ = "0.1.0"

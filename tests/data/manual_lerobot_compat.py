"""Manual check (not collected by pytest): LeRobot 0.6.1's own LeRobotDataset reads chunkwise
datasets (PNG or video cameras) and returns what ChunkDataset returns.

LeRobot 0.6.1 declares Python >= 3.12 and the venv has 3.11; its only 3.12-only syntax is
a handful of PEP 695 type aliases / type parameters, which ``--prepare`` rewrites in the
installed copy. It is installed beside the venv without its heavy dependencies, with the
PyAV it pins (av 15: this also runs chunkwise's own decoder on av 15); torchvision, which
the dataset code only needs for image transforms, is stubbed out:

    pip install --target /tmp/lrpk6 --no-deps --ignore-requires-python lerobot==0.6.1 "av>=15,<16"
    pip install --target /tmp/lrpk6 "datasets>=4.8,<5" "pandas>=2,<3" "huggingface_hub>=1.6,<2" \\
        "einops>=0.8,<0.9" termcolor jsonlines
    rm -rf /tmp/lrpk6/numpy* /tmp/lrpk6/pyarrow* /tmp/lrpk6/packaging* /tmp/lrpk6/tqdm*
    python tests/data/manual_lerobot_compat.py --prepare /tmp/lrpk6
    PYTHONPATH=/tmp/lrpk6 python tests/data/manual_lerobot_compat.py <dataset dir> [...]

LeRobot decodes with ``video_backend="pyav"`` (its torchcodec default is not installed).
"""
from __future__ import annotations

import importlib.machinery
import re
import sys
import types
from pathlib import Path


def prepare(target: str) -> None:
    """Rewrite PEP 695 syntax in <target>/lerobot to its Python 3.11 equivalent."""
    for f in Path(target, "lerobot").rglob("*.py"):
        src = f.read_text()
        out = re.sub(r"(?m)^type (\w+) = ", r"\1 = ", src)
        names: list[str] = []

        def cls(m: re.Match) -> str:
            params = [p.split(":")[0].strip() for p in m.group(2).split(",")]
            names.extend(params)
            inner = m.group(3)[1:-1] + ", " if m.group(3) else ""
            return f"class {m.group(1)}({inner}_Generic[{', '.join(params)}]):"

        def fn(m: re.Match) -> str:
            names.extend(p.split(":")[0].strip() for p in m.group(2).split(","))
            return f"def {m.group(1)}("

        out = re.sub(r"(?m)^class (\w+)\[([^\]]+)\](\([^)]*\))?:", cls, out)
        out = re.sub(r"(?m)^def (\w+)\[([^\]]+)\]\(", fn, out)
        if names:
            lines = out.split("\n")
            at = max([i + 1 for i, line in enumerate(lines) if line.startswith("from __future__")], default=0)
            lines.insert(at, "from typing import Generic as _Generic, TypeVar as _TypeVar\n"
                         + "\n".join(f'{n} = _TypeVar("{n}")' for n in sorted(set(names))))
            out = "\n".join(lines)
        if out != src:
            f.write_text(out)
            print("rewrote", f)


def _stub_torchvision() -> None:
    class _Any:
        def __init__(self, *a, **k): pass
        def __call__(self, *a, **k): return a[0] if a else None
        def __class_getitem__(cls, item): return cls

    def _getattr(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any

    for name in ["torchvision", "torchvision.io", "torchvision.transforms", "torchvision.transforms.v2",
                 "torchvision.transforms.v2.functional", "torchvision.transforms.functional"]:
        m = types.ModuleType(name)
        m.__path__ = []
        m.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        m.__getattr__ = _getattr
        sys.modules[name] = m
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, m)


def check(roots: list[str], H: int = 10, max_frames: int = 400) -> None:
    _stub_torchvision()
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from chunkwise.data import ChunkDataset

    import av
    print("lerobot 0.6.1 with av", av.__version__)
    for root in roots:
        ours = ChunkDataset(root, chunk_size=H)
        lr = LeRobotDataset("local/check", root=root, video_backend="pyav",
                            delta_timestamps={"action": [k / ours.fps for k in range(H)]})
        idx = (range(len(ours)) if len(ours) <= max_frames
               else np.random.default_rng(0).choice(len(ours), max_frames, replace=False))
        worst = 0
        for i in map(int, idx):
            a, b = lr[i], ours[i]
            assert np.array_equal(a["action"].numpy(), b["action"]), (root, i)
            assert np.array_equal(a["action_is_pad"].numpy(), b["action_is_pad"]), (root, i)
            assert np.array_equal(a["observation.state"].numpy(), b["observation.state"]), (root, i)
            for key in ("timestamp", "index", "task_index", "next.success", "next.done"):
                if key in b:
                    assert np.asarray(a[key]).item() == np.asarray(b[key]).item(), (root, key, i)
            for key in ours.camera_keys:
                if hasattr(a[key], "numpy"):  # video: float CHW in [0, 1]
                    img = (a[key].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0)
                else:  # PNG: a PIL image here (torchvision's ToTensor is stubbed out)
                    img = np.asarray(a[key].convert("RGB"))
                worst = max(worst, int(np.abs(img.astype(int) - b[key].astype(int)).max()))
        kinds = {k: ours.features[k]["dtype"] for k in ours.camera_keys}
        print(f"{root}: LeRobot and ChunkDataset agree on {len(idx)} frames (action chunk H={H}, pad mask, state, "
              f"timestamp/index/task_index/next.*); cameras {kinds}, max pixel difference {worst}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:
        prepare(sys.argv[2])
    else:
        check(sys.argv[1:])

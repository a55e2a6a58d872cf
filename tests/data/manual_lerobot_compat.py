"""Manual check (not collected by pytest): LeRobot's own LeRobotDataset opens chunkwise datasets.

LeRobot >= 0.5 needs Python >= 3.12, so this uses lerobot 0.4.4 (also format v3.0), installed
beside the project venv without its heavy dependencies; the video decoders it imports at
module level are stubbed (these datasets embed PNG images, no video):

    pip install --target /tmp/lrpk --no-deps lerobot==0.4.4 "accelerate>=1.10,<2" psutil
    pip install --target /tmp/lrpk "datasets>=4,<5" pandas "huggingface_hub<0.36" jsonlines einops deepdiff termcolor
    rm -rf /tmp/lrpk/numpy* /tmp/lrpk/pyarrow* /tmp/lrpk/packaging* /tmp/lrpk/tqdm*
    PYTHONPATH=/tmp/lrpk python tests/data/manual_lerobot_compat.py <dataset dir> [...]
"""
import sys, types
# lerobot 0.4.4 imports video decoders at module level; this check reads image datasets only.
for name in ["torchvision", "torchvision.transforms", "torchvision.transforms.v2", "av"]:
    if name not in sys.modules:
        try:
            __import__(name)
        except Exception:
            import importlib.machinery
            m = types.ModuleType(name); m.__path__ = []
            m.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            sys.modules[name] = m
if not hasattr(sys.modules["av"], "logging"):
    sys.modules["av"].logging = types.SimpleNamespace(WARNING=30, ERROR=40, set_level=lambda *a: None)
import numpy as np, torch
class _ToTensor:  # stand-in for torchvision's: PIL -> float CHW in [0, 1]
    def __call__(self, img):
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
sys.modules["torchvision.transforms"].ToTensor = _ToTensor
from lerobot.datasets.lerobot_dataset import LeRobotDataset
for root in sys.argv[1:]:
    ds = LeRobotDataset("local/check", root=root)
    item = ds[len(ds) // 2]
    print(root, "episodes", ds.num_episodes, "frames", ds.num_frames, "fps", ds.fps)
    print({k: (tuple(v.shape), str(v.dtype)) if hasattr(v, "shape") else v for k, v in item.items()})
    print("stats keys", sorted(ds.meta.stats)[:4], "tasks", list(ds.meta.tasks.index))
# Action chunks through LeRobot's delta_timestamps vs chunkwise's ChunkDataset windows.
from chunkwise.data import ChunkDataset
for root in sys.argv[1:]:
    H = 10
    lr = LeRobotDataset("local/check", root=root, delta_timestamps={"action": [k / 80 for k in range(H)]})
    ours = ChunkDataset(root, chunk_size=H)
    n_ok = 0
    for i in range(len(ours)):
        a, b = lr[i], ours[i]
        assert np.array_equal(a["action"].numpy(), b["action"]), (root, i)
        assert np.array_equal(a["action_is_pad"].numpy(), b["action_is_pad"]), (root, i)
        assert np.array_equal(a["observation.state"].numpy(), b["observation.state"])
        for key in ours.camera_keys:
            assert np.array_equal((a[key].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0), b[key])
        n_ok += 1
    print(root, f"LeRobot and ChunkDataset agree on all {n_ok} frames (action chunk H={H}, pad mask, state, images)")

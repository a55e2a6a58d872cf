"""`chunkwise --version`, and no numpy "smallest subnormal" warnings from our commands."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import chunkwise
from chunkwise import cli

SUBNORMAL = "The value of the smallest subnormal for <class 'numpy.float32'> type is zero."


def _python(code_or_args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-W", "default", *code_or_args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_version_flag_prints_the_installed_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"chunkwise {version('chunkwise')}\n"
    assert chunkwise.__version__ == version("chunkwise")
    assert cli.main(["-V"]) == 0 and capsys.readouterr().out.startswith("chunkwise ")
    assert cli.main([]) == 0 and "--version" in capsys.readouterr().out  # named in the usage
    proc = _python(["-m", "chunkwise.cli", "--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"chunkwise {version('chunkwise')}"


def test_eval_help_emits_no_warnings():
    proc = _python(["-m", "chunkwise.cli", "eval", "--help"])
    assert proc.returncode == 0 and "--n_episodes" in proc.stdout
    assert "Warning" not in proc.stderr and "subnormal" not in proc.stderr, proc.stderr


def test_numpy_subnormal_warning_under_flush_to_zero_is_silenced():
    """numpy < 2.4 warns (from numpy's getlimits module) when finfo is first built while the
    CPU flushes subnormals to zero, as `chunkwise train` has it (torch.set_flush_denormal).
    The warning is emulated exactly (numpy >= 2.4 no longer raises it), then the real
    sequence runs; only numpy's own warning is ignored, the same text from elsewhere is not."""
    code = f"""
import warnings
import chunkwise
for module in ("numpy._core.getlimits", "numpy.core.getlimits", "somebody.else"):
    warnings.warn_explicit({SUBNORMAL!r}, UserWarning, "getlimits.py", 91, module=module)
import numpy as np, torch
torch.set_flush_denormal(True)
try:
    np.finfo(np.float32), np.finfo(np.float64), np.finfo(np.float16)
finally:
    torch.set_flush_denormal(False)
"""
    proc = _python(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("smallest subnormal") == 1, proc.stderr  # only somebody.else's

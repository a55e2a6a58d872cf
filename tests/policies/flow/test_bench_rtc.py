"""``chunkwise bench rtc`` runs end to end and reports a ratio per prefix mode."""

from __future__ import annotations

import json

from chunkwise.bench import main as bench_main


def test_bench_rtc_reports_guidance_overhead(tmp_path, capsys):
    out = tmp_path / "rtc.json"
    assert bench_main(["rtc", "--n_chunks=3", "--warmup=1", f"--json_out={out}"]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"none", "rtc_guided", "rtc_trained", "delta_expert"}
    assert res["none"]["ratio_vs_none"] == 1.0
    assert res["rtc_guided"]["ratio_vs_none"] > 1.0  # one backward pass per Euler step
    assert "guidance overhead" in capsys.readouterr().out


def test_bench_rtc_times_an_image_policy(tmp_path):
    import torch
    from flow_helpers import tiny_config, tiny_info

    torch.manual_seed(0)
    policy = tiny_config(use_images=True, rtc_training=True, delta_expert=True).make_policy(tiny_info(("corner2",)))
    assert policy.image_keys == ["observation.images.corner2"]
    policy.save_pretrained(tmp_path / "img")
    out = tmp_path / "rtc.json"
    assert bench_main(["rtc", f"--policy_path={tmp_path / 'img'}", "--n_chunks=2", "--warmup=1",
                       f"--json_out={out}"]) == 0  # the camera frame is part of the timed observation
    assert json.loads(out.read_text())["none"]["p50_ms"] > 0

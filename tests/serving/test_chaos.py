"""``chunkwise bench soak`` in small: real server processes, chaos on, every count checked."""

from __future__ import annotations

import pytest

from chunkwise.serving.chaos import SoakConfig, run_soak


def test_short_soak_with_disconnects_frozen_clients_and_a_kill_9():
    cfg = SoakConfig(clients=8, seconds=12, rate_hz=20, disconnect_every_s=2.0, frozen_clients=1, freeze_s=4,
                     kill_at=0.4, warmup_s=1.0, keepalive_s=1.0, keepalive_timeout_s=1.0, progress=False)
    rep = run_soak(cfg)
    assert rep.ok, rep.summary() + "\n" + "\n".join(rep.error_messages)
    assert rep.ok_replies > 8 * 12 * 20 * 0.3  # the run really ran, through the restart
    assert rep.disconnects >= 8 and rep.restart_down_s > 0 and rep.resume_s_max < 10
    assert rep.frozen_started >= 2 and rep.health_checks > 20
    assert len(rep.rss_mb) == 2  # both server lifetimes were measured


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="exceed --max_streams"):
        SoakConfig(clients=128, frozen_clients=4)
    with pytest.raises(ValueError, match="kill_at"):
        SoakConfig(kill_at=1.5)

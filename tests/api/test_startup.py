"""Start-up refusals: a root gateway never runs users' jobs as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.gateway_process import cli


@pytest.mark.skipif(os.geteuid() != 0, reason="about a gateway that runs as root")
def test_root_gateway_with_embedded_in_multi_user_mode_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "mixed.toml"
    config.write_text('[systems.local]\nscheduler = "embedded"\n[systems.c]\nscheduler = "slurm"\n')
    done = cli(tmp_path, "serve", "--config", str(config), "--port", "1", check=False)
    assert done.returncode == 2
    text = " ".join(done.stderr.split())
    assert "configuration error" in text and "[users] mode = 'single'" in text

"""``launchers/mlflow_screenshot.py``: a smoke run, ``mlflow server`` and headless Chromium
give a PNG of the runs table; the server is gone afterwards. Real processes, minutes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_screenshot_of_the_training_view(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "ui.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, str(REPO / "launchers" / "mlflow_screenshot.py"),
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "workflowType=machine_learning" in proc.stdout
    assert out.stat().st_size > 20_000
    with Image.open(out) as image:
        assert image.size == (1600, 1000)
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50  # a rendered page, not a blank or error screen
    port = int(re.search(r"127\.0\.0\.1:(\d+)/", proc.stdout).group(1))
    with socket.socket() as sock:  # the server was stopped
        assert sock.connect_ex(("127.0.0.1", port)) != 0

"""Ctrl-C while a job's modules still import (the first seconds) ends in one line and exit 130, not a traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INTERRUPTED_IMPORT = """
import sys
from beam_pipelines import cli
def interrupted_import(name):
    raise KeyboardInterrupt  # what SIGINT raises in the middle of importing the job's module
cli.job_entry = interrupted_import
sys.exit(cli.main(["generate", "--output", "unused"]))
"""


def test_ctrl_c_before_the_job_starts_is_one_line_and_exit_130():
    out = subprocess.run([sys.executable, "-c", INTERRUPTED_IMPORT], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 130, out
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == "inverse-instruct: interrupted before the job started"

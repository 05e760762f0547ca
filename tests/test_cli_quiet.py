"""The command line is quiet: TensorFlow's start-up log lines (oneDNN, CPU
features, no CUDA driver, cuInit) are not shown unless the user asks for
them with TF_CPP_MIN_LOG_LEVEL."""

import os
import subprocess
import sys


def _run(tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", "aefs_keras.cli", "export", str(tmp_path / "none.keras"),
                           str(tmp_path / "serving"), "m"], capture_output=True, text=True, env={**base, **env},
                          timeout=300)


def test_only_our_one_line_error_by_default_and_tensorflow_lines_when_asked(tmp_path):
    quiet = _run(tmp_path)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [f"aefs-keras export: error: No such file: {tmp_path / 'none.keras'}"]
    loud = _run(tmp_path, TF_CPP_MIN_LOG_LEVEL="0")  # the user's own level is kept
    assert loud.returncode == 2 and "I0000" in loud.stderr

"""The benchmark scripts still run: they import the product's modules inside functions, so a
rename would otherwise break them unnoticed until someone measures. No figure is asserted: speed
belongs to the scripts' output, not to a test."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
pytestmark = pytest.mark.skipif(not BENCH.is_dir(), reason="bench/ is not in the test image")


@pytest.mark.parametrize("script, args, expected", [
    ("scale_up.py", (), "peak memory of one decision"),
    ("loop.py", ("--quick",), "pods placed on nodes / to new instances"),
])
def test_the_benchmark_runs_and_reports(script, args, expected):
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                            timeout=300, cwd=BENCH.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert expected in result.stdout, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]

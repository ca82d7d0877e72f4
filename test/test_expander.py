"""--expander (issue 9): the three choices, and a bad one as one line naming the flag."""
import os
import pathlib
import subprocess
import sys

import pytest

from autoscaler.model.config import EXPANDERS, Settings, SettingsError, validate

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("expander", EXPANDERS)
def test_expanders(expander):
    assert validate(Settings(cluster_name="c", expander=expander)).expander == expander


def test_price_is_the_default():
    assert Settings(cluster_name="c").expander == "price"


def test_unknown_expander_is_named():
    with pytest.raises(SettingsError) as raised:
        validate(Settings(cluster_name="c", expander="random"))
    assert raised.value.flag == "--expander" and "price, least-waste, priority" in str(raised.value)


def test_unknown_expander_on_the_command_line_is_one_line():
    environment = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "--cluster-name", "c", "--expander", "cheapest", "--once"],
                            capture_output=True, text=True, env=environment, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "--expander" in line and "Traceback" not in result.stderr

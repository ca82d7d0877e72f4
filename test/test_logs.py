"""Logs: the original text format by default, one JSON object per line on request, and never a
credential, whatever logged it."""
import io
import json
import logging

import pytest

from autoscaler.fakes.kube_objects import make_node, make_pod
from autoscaler.run.logs import REDACTED, TEXT_FORMAT, Redactor, configure_logging, secret_values

HOOK = "https://hooks.slack.com/services/T0123/B0456/VeryS3cretT0ken"
ACCESS_KEY = "AKIAEXAMPLEACCESS123"
SECRET_KEY = "wJalr/XUtnFEMI+K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("values, expected", [
    ((None, "", None), ()),
    (("short",), ()),  # too short to redact without eating ordinary words
    ((ACCESS_KEY, SECRET_KEY), (SECRET_KEY, ACCESS_KEY)),
    ((HOOK,), (HOOK, "/services/T0123/B0456/VeryS3cretT0ken")),
], ids=["none", "too-short", "aws-keys-longest-first", "hook-and-its-path"])
def test_secret_values(values, expected):
    assert secret_values(*values) == expected


@pytest.mark.parametrize("text, expected", [
    (f"key={ACCESS_KEY}", f"key={REDACTED}"),
    (f"posting to {HOOK} failed", f"posting to {REDACTED} failed"),
    ("POST /services/T0123/B0456/VeryS3cretT0ken HTTP/1.1", f"POST {REDACTED} HTTP/1.1"),
    ("nothing secret here", "nothing secret here"),
], ids=["access-key", "hook", "hook-path-as-urllib3-logs-it", "untouched"])
def test_redactor(text, expected):
    assert Redactor(secret_values(ACCESS_KEY, SECRET_KEY, HOOK))(text) == expected


def log_through(log_format, emit, verbosity=3):
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(verbosity, log_format, secret_values(ACCESS_KEY, SECRET_KEY, HOOK), stream=stream)
        emit(logging.getLogger("autoscaler.cluster"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    return stream.getvalue()


def leak_everywhere(log):
    log.debug("settings: key %s secret %s", ACCESS_KEY, SECRET_KEY)
    log.warning(f"hook {HOOK}")
    try:
        raise RuntimeError(f"connection to {HOOK} refused")
    except RuntimeError:
        log.exception("Slack failed")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_credential_reaches_the_output_in_arguments_messages_or_tracebacks(log_format):
    output = log_through(log_format, leak_everywhere)
    for secret in (ACCESS_KEY, SECRET_KEY, HOOK, "VeryS3cretT0ken"):
        assert secret not in output
    assert output.count(REDACTED) >= 4
    assert "RuntimeError" in output  # the traceback is kept, only the secret goes


def test_text_format_is_the_originals():
    output = log_through("text", lambda log: log.info("Loop done: pending=3"))
    assert TEXT_FORMAT == "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    assert output.rstrip().endswith(" - autoscaler.cluster - INFO - Loop done: pending=3")


def test_json_lines_carry_the_counters_as_fields():
    counters = {"pending": 3, "groups_raised": 1, "seconds": 0.25, "message": "not allowed to shadow"}
    output = log_through("json", lambda log: log.info("Loop done: pending=3", extra={"counters": counters}))
    entry = json.loads(output)
    assert entry["level"] == "INFO" and entry["logger"] == "autoscaler.cluster"
    assert entry["message"] == "Loop done: pending=3"
    assert entry["pending"] == 3 and entry["groups_raised"] == 1 and entry["seconds"] == 0.25
    assert entry["time"].endswith("+00:00")


def test_verbosity_levels():
    output = log_through("text", lambda log: (log.info("info line"), log.warning("warning line")), verbosity=1)
    assert "warning line" in output and "info line" not in output


def test_a_json_run_with_credentials_at_debug_prints_one_object_per_line_and_no_secret(
        fake_aws, fake_kube, tmp_path, start_autoscaler):
    fake_aws.create_group("us-west-2", "cpu-west", "e2e", instance_type="m5.xlarge", max_size=20)
    fake_kube.add(make_node("static-node", cpu="1", memory="1Gi"))
    fake_kube.add(make_pod("job-1", cpu="2", memory="1Gi"))
    # Slack answers nothing on this port: the failed post is logged.
    process = start_autoscaler("--regions", "us-west-2", "--once", "-vvv", "--log-format", "json",
                               "--slack-hook", "http://127.0.0.1:9/services/T0123/B0456/VeryS3cretT0ken",
                               "--aws-access-key", ACCESS_KEY, "--aws-secret-key", SECRET_KEY)
    assert process.wait(120) == 0, process.log()
    output = process.log()
    for secret in (ACCESS_KEY, SECRET_KEY, "VeryS3cretT0ken"):
        assert secret not in output
    entries = [json.loads(line) for line in output.splitlines()]
    summary = [entry for entry in entries if entry["message"].startswith("Loop done:")]
    assert len(summary) == 1 and summary[0]["pending"] == 1 and summary[0]["groups_raised"] == 1
    assert any("Slack notification failed" in entry["message"] for entry in entries)

"""Run main.py as a long-lived subprocess against the fakes, and poll for what it does."""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent


def poll(condition: Callable[[], object], timeout: float = 30, what: str = "the condition", interval: float = 0.05):
    """The condition's first truthy value; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AutoscalerProcess:
    """``python main.py ...`` with its stderr in a file the test can read while it runs."""

    def __init__(self, args, env: dict, log_path: pathlib.Path):
        self.log_path = log_path
        self._log_file = open(log_path, "w")
        self.popen = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                                      stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        poll(lambda: text in self.log() or self.popen.poll() is not None, timeout, f"{text!r} in the log")
        assert text in self.log(), f"exited with {self.popen.returncode} before logging {text!r}:\n{self.log()}"

    def terminate(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._log_file.close()


def autoscaler_env(fake_aws, extra: Optional[dict] = None) -> dict:
    env = fake_aws.env(inherit=os.environ)
    env.update(extra or {})
    return env

"""ACT: Slack incoming-webhook messages. A failed post is logged and never stops the loop."""
from __future__ import annotations

import logging
from typing import Optional

import requests

from ..clients.deadline import DeadlineExceeded, call_with_deadline
from ..model.text import named_list

log = logging.getLogger(__name__)

POST_TIMEOUT_SECONDS = 5  # to connect, between two reads, and for the whole post (clients/deadline.py)
MAX_PODS_NAMED = 5


class SlackNotifier:
    def __init__(self, hook: Optional[str], session: Optional[requests.Session] = None):
        self.hook = hook
        self.session = session or requests.Session()
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return bool(self.hook)

    def post(self, text: str) -> bool:
        if not self.hook:
            return False
        try:
            response = call_with_deadline(POST_TIMEOUT_SECONDS, "Slack notification", self.session.post, self.hook,
                                          json={"text": text}, timeout=POST_TIMEOUT_SECONDS)
            response.raise_for_status()
        except (requests.RequestException, DeadlineExceeded) as error:
            self.failed += 1
            # The hook URL is a credential: name the failure, never the URL.
            status = getattr(getattr(error, "response", None), "status_code", None)
            log.warning("Slack notification failed (%s%s); continuing", type(error).__name__, f", HTTP {status}" if status else "")
            return False
        self.sent += 1
        return True


def scale_up_message(group: str, region: str, previous: int, desired: int, pods, pod_count: int = 0) -> str:
    """``pod_count``: the true number of pods behind the raise (``pods`` names the first few)."""
    text = f"Scaled up {group} ({region}) by {desired - previous}, from {previous} to {desired} instances"
    return f"{text}, for pods: {named_list(pods, MAX_PODS_NAMED, total=pod_count)}" if pods else text

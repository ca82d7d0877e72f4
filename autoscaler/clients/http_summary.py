"""One line for an HTTP answer that is not what an API should send: its status and the first line
of its text, never the page. An HTML error page (a proxy, a web server at the wrong address) is
reduced to its title, or its first line of text without tags."""
from __future__ import annotations

import html
import re
from typing import Optional, Union

MAX_CHARS = 120
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_SCRIPT_OR_STYLE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def first_line(body: Union[bytes, str, None], limit: int = MAX_CHARS) -> str:
    """The first non-empty line of text of ``body`` (its title, for an HTML page), at most ``limit``
    characters; "" for an empty body."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    if looks_like_html(text):
        title = _TITLE.search(text)
        text = title.group(1) if title and title.group(1).strip() else _TAG.sub("\n", _SCRIPT_OR_STYLE.sub("", text))
        text = html.unescape(text)
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[:limit - 1] + "…"
    return ""


def looks_like_html(text: Union[bytes, str]) -> bool:
    head = (text[:200].decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else text[:200]).lstrip().lower()
    return head.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in head


def describe_answer(status: Optional[int], body: Union[bytes, str, None], reason: str = "") -> str:
    """``HTTP 404 Not Found: 404 Not Found`` style: status, reason and the first line of the body."""
    words = [f"HTTP {status}" if status else "an answer", reason]
    line = first_line(body)
    text = " ".join(word for word in words if word)
    return f"{text}: {line}" if line and line != reason else text

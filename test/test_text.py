"""model/text: the "a, b and N more" lists and the UTC timestamps every layer writes, by table."""
from datetime import datetime, timedelta, timezone

import pytest

from autoscaler.model.text import named_list, utc_text

PODS = [f"a/{i}" for i in range(8)]


@pytest.mark.parametrize("names, limit, total, separator, expected", [
    pytest.param([], 5, None, ", ", "", id="none"),
    pytest.param(["a/1", "a/2"], 5, None, ", ", "a/1, a/2", id="fewer-than-the-limit"),
    pytest.param(PODS[:5], 5, None, ", ", "a/0, a/1, a/2, a/3, a/4", id="exactly-the-limit"),
    pytest.param(PODS, 5, None, ", ", "a/0, a/1, a/2, a/3, a/4 and 3 more", id="comma-list-has-no-comma-before-and"),
    # Scale up keeps the first 20 names of 24 pending pods and their true count.
    pytest.param(PODS * 2 + PODS[:4], 5, 24, ", ", "a/0, a/1, a/2, a/3, a/4 and 19 more", id="counts-a-separate-total"),
    pytest.param(PODS[:5], 5, 9, ", ", "a/0, a/1, a/2, a/3, a/4 and 4 more", id="total-beyond-the-names-given"),
    pytest.param(PODS[:2], 5, 1, ", ", "a/0, a/1", id="total-never-below-the-names"),
    pytest.param(["x: too small, at max", "y: timed out", "z: at max"], 2, None, "; ",
                 "x: too small, at max; y: timed out; and 1 more", id="semicolon-list-keeps-it-before-and"),
    pytest.param(["{pool=a}", "{pool=b}", "{pool=c}", "{pool=d}"], 3, None, " ",
                 "{pool=a} {pool=b} {pool=c} and 1 more", id="space-list"),
    pytest.param(["a/0"], 1, 3, "; ", "a/0; and 2 more", id="semicolon-with-total"),
])
def test_named_list(names, limit, total, separator, expected):
    assert named_list(names, limit, total, separator) == expected


@pytest.mark.parametrize("moment, expected", [
    pytest.param(datetime(2026, 11, 27, 10, 0, 5, 999_999, tzinfo=timezone.utc), "2026-11-27T10:00:05Z",
                 id="utc-to-the-second"),
    pytest.param(datetime(2026, 11, 27, 1, 30, tzinfo=timezone(timedelta(hours=-9))), "2026-11-27T10:30:00Z",
                 id="another-offset-is-converted"),
    pytest.param(datetime(2026, 12, 31, 23, 59, 59), "2026-12-31T23:59:59Z", id="naive-is-taken-as-utc-not-local-time"),
])
def test_utc_text(moment, expected):
    assert utc_text(moment) == expected

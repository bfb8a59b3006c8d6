"""core/backoff.py: the waits of the reconnect loops (the bridge's robot connection, the speech
node's Pepper microphones)."""

from __future__ import annotations

import pytest

from uservlm_ros.core.backoff import Backoff
from uservlm_ros.core.errors import ConfigError


def test_the_delays_double_up_to_the_ceiling_and_start_over_after_a_reset():
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.reset()
    assert [backoff.next_delay() for _ in range(2)] == [0.5, 1.0]


def test_other_growth_factors():
    steady = Backoff(2.0, 2.0, factor=1.0)
    assert [steady.next_delay() for _ in range(3)] == [2.0, 2.0, 2.0]
    tripling = Backoff(1.0, 20.0, factor=3.0)
    assert [tripling.next_delay() for _ in range(4)] == [1.0, 3.0, 9.0, 20.0]


@pytest.mark.parametrize(
    ("first_s", "max_s", "factor", "message"),
    [
        (0.0, 1.0, 2.0, "0 < first delay <= longest delay, got 0 s and 1 s"),
        (2.0, 1.0, 2.0, "got 2 s and 1 s"),
        (float("nan"), 1.0, 2.0, "first delay"),
        (1.0, float("inf"), 2.0, "first delay"),
        (1.0, 2.0, 0.5, "growth factor must be >= 1, got 0.5"),
    ],
)
def test_bad_bounds_are_one_clear_config_error(first_s, max_s, factor, message):
    with pytest.raises(ConfigError, match=message):
        Backoff(first_s, max_s, factor)

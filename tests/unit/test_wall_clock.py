"""Live mode's business date follows the calendar date in England, not UTC, and only moves forward."""

from __future__ import annotations

from datetime import UTC, date, datetime

from streams.worker import WallClockTicker, london_today


def test_london_date_differs_from_utc_just_before_midnight_in_summer() -> None:
    # 23:30 UTC on 30 June is 00:30 BST on 1 July.
    assert london_today(datetime(2025, 6, 30, 23, 30, tzinfo=UTC)) == date(2025, 7, 1)
    # in winter London is on UTC
    assert london_today(datetime(2025, 1, 31, 23, 30, tzinfo=UTC)) == date(2025, 1, 31)


def test_a_tick_is_due_once_per_new_date() -> None:
    moments = iter([
        datetime(2025, 3, 4, 8, 0, tzinfo=UTC),
        datetime(2025, 3, 4, 9, 0, tzinfo=UTC),
        datetime(2025, 3, 5, 0, 1, tzinfo=UTC),
        datetime(2025, 3, 4, 23, 0, tzinfo=UTC),  # a clock stepped back never moves the date back
    ])
    ticker = WallClockTicker(now=lambda: next(moments))
    first = ticker.due()
    assert first == date(2025, 3, 4)
    ticker.sent(first)
    assert ticker.due() is None
    second = ticker.due()
    assert second == date(2025, 3, 5)
    ticker.sent(second)
    assert ticker.due() is None

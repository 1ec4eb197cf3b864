"""The one timestamp format on the wire: ISO-8601 in UTC, milliseconds, `Z`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.model import utc_timestamp


def test_a_utc_moment_is_written_with_milliseconds_and_z():
    assert utc_timestamp(datetime(2026, 11, 28, 19, 4, 5, 123000, tzinfo=UTC)) == (
        "2026-11-28T19:04:05.123Z"
    )


def test_a_naive_moment_is_taken_as_utc():
    assert utc_timestamp(datetime(2026, 11, 28, 19, 4, 5, 123000)) == "2026-11-28T19:04:05.123Z"


def test_a_moment_in_another_zone_is_converted_to_utc():
    berlin_winter = timezone(timedelta(hours=1))

    assert utc_timestamp(datetime(2026, 11, 28, 20, 4, 5, 123000, tzinfo=berlin_winter)) == (
        "2026-11-28T19:04:05.123Z"
    )


def test_converting_to_utc_may_move_the_moment_into_the_next_year():
    new_york_winter = timezone(timedelta(hours=-5))

    assert utc_timestamp(datetime(2026, 12, 31, 22, 30, tzinfo=new_york_winter)) == (
        "2027-01-01T03:30:00.000Z"
    )


def test_a_zone_with_a_half_hour_offset_is_converted_too():
    india = timezone(timedelta(hours=5, minutes=30))

    assert utc_timestamp(datetime(2026, 6, 1, 5, 30, tzinfo=india)) == "2026-06-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("microsecond", "written"),
    [(0, ".000Z"), (999, ".000Z"), (1000, ".001Z"), (45000, ".045Z"), (999999, ".999Z")],
)
def test_exactly_three_millisecond_digits_are_written_truncating_the_rest(microsecond, written):
    moment = datetime(2026, 1, 2, 3, 4, 5, microsecond, tzinfo=UTC)

    assert utc_timestamp(moment) == f"2026-01-02T03:04:05{written}"


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 7, 4, 23, 59, 59, 999999),
        datetime(2030, 2, 28, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    ],
)
def test_every_timestamp_has_the_same_shape(moment):
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp(moment))

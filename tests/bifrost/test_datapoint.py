"""DataPoint, the value every read returns: a Rust class (bifrost._native) with the Python one's behaviour."""

from __future__ import annotations

import copy
import math
import pickle
import time
from datetime import datetime, timezone

import pytest

import bifrost
import bifrost.tags
from bifrost import DataPoint, Quality, _native


def old_repr(value: object, quality: Quality, timestamp: float) -> str:
    """The repr of the Python DataPoint this class replaced."""
    return f"DataPoint(value={value!r}, quality={quality.value}, timestamp={timestamp:.3f})"


def test_it_is_one_class_wherever_it_is_imported_from() -> None:
    assert bifrost.DataPoint is bifrost.tags.DataPoint is _native.DataPoint
    assert DataPoint.__module__ == "bifrost"


def test_the_quality_is_good_and_the_time_now_unless_given() -> None:
    before = time.time()
    point = DataPoint(1.5)
    after = time.time()
    assert point.value == 1.5
    assert point.quality is Quality.GOOD
    assert point.good
    assert before <= point.timestamp <= after
    given = DataPoint(None, Quality.BAD, 10.0)
    assert (given.value, given.quality, given.timestamp, given.good) == (None, Quality.BAD, 10.0, False)
    assert DataPoint(7, timestamp=3).timestamp == 3.0
    assert DataPoint(7, quality=Quality.UNCERTAIN).quality is Quality.UNCERTAIN


def test_a_quality_given_by_its_value_becomes_the_member() -> None:
    assert DataPoint(1, "bad", 0.0).quality is Quality.BAD  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'excellent' is not a valid Quality"):
        DataPoint(1, "excellent", 0.0)  # type: ignore[arg-type]


def test_points_are_equal_by_value_quality_and_timestamp() -> None:
    point = DataPoint(1.5, Quality.GOOD, 10.0)
    assert point == DataPoint(1.5, Quality.GOOD, 10.0)
    assert not point != DataPoint(1.5, Quality.GOOD, 10.0)  # noqa: SIM202  # __ne__ itself
    assert point != DataPoint(1.5, Quality.GOOD, 10.5)
    assert point != DataPoint(1.5, Quality.BAD, 10.0)
    assert point != DataPoint(2, Quality.GOOD, 10.0)
    assert DataPoint(1, Quality.GOOD, 0.0) == DataPoint(1.0, Quality.GOOD, 0.0)  # as the tuples would be
    assert point != (1.5, Quality.GOOD, 10.0)
    nan = DataPoint(math.nan, Quality.GOOD, 0.0)
    assert nan == nan  # the same object, as a tuple of it compares
    with pytest.raises(TypeError):
        _ = point < point  # type: ignore[operator]


def test_points_are_unhashable_and_immutable() -> None:
    point = DataPoint(1, Quality.GOOD, 0.0)
    with pytest.raises(TypeError, match="unhashable"):
        hash(point)
    with pytest.raises(AttributeError):
        point.value = 2  # type: ignore[misc]
    assert not hasattr(point, "__dict__")


@pytest.mark.parametrize(
    ("value", "quality", "timestamp"),
    [
        (1.5, Quality.GOOD, 10.0),
        (None, Quality.BAD, 1_700_000_000.123456),
        ("tank 'A'", Quality.UNCERTAIN, 0.0625),  # a tie: rounds to even, as Python does
        (True, Quality.GOOD, 0.0005),
        (2**64 - 1, Quality.GOOD, -1.5),
        (-0.0, Quality.GOOD, 1e15 + 0.0005),
        (math.nan, Quality.GOOD, math.inf),
    ],
)
def test_the_repr_is_the_python_ones(value: object, quality: Quality, timestamp: float) -> None:
    assert repr(DataPoint(value, quality, timestamp)) == old_repr(value, quality, timestamp)  # type: ignore[arg-type]


def test_datetime_is_aware_utc() -> None:
    point = DataPoint(1, Quality.GOOD, 1_700_000_000.25)
    assert point.datetime == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=timezone.utc)
    assert point.datetime.tzinfo is timezone.utc


def test_points_pickle_and_copy() -> None:
    point = DataPoint("text", Quality.BAD, 12.5)
    for twin in (pickle.loads(pickle.dumps(point)), copy.copy(point), copy.deepcopy(point)):
        assert type(twin) is DataPoint
        assert twin == point
        assert twin.quality is Quality.BAD

"""The input lag computed from the broker's end offsets and what the worker read."""

from __future__ import annotations

from streams.probe import input_lag


def test_lag_counts_from_the_newest_record_read_or_from_the_start_position() -> None:
    """A partition read up to offset 6 of 10 lags 3 (offsets 7, 8, 9); one not read yet
    lags from where the worker started reading it; one with neither is left out."""
    ends = {("a", 0): 10, ("a", 1): 4, ("b", 0): 9, ("b", 1): 2}
    read = {("a", 0): 6}
    starts = {("a", 1): 1, ("b", 0): None}
    assert input_lag(ends, read, starts) == {"a": 3 + 3}


def test_a_partition_read_to_its_end_lags_nothing_and_never_below_zero() -> None:
    """Read to the last record: 0. An end offset the worker's reading has passed (an
    older answer of the broker) counts as 0, not as negative lag."""
    ends = {("a", 0): 10, ("a", 1): 3}
    assert input_lag(ends, {("a", 0): 9, ("a", 1): 5}, {}) == {"a": 0}


def test_partitions_keyed_by_named_tuples_match_plain_pairs() -> None:
    """The worker keys what it read by Faust's ``TP`` (a named tuple); the probe answers
    with plain ``(topic, partition)`` pairs: they are the same partitions."""
    from faust.types import TP

    assert input_lag({("a", 0): 5}, {TP("a", 0): 1}, {}) == {"a": 3}


async def test_a_stopped_probe_opens_no_connection() -> None:
    """Once the worker stops the probe, a timer that still fires gets an error at once
    and nothing is connected (the address here answers nothing)."""
    import pytest

    from streams.probe import BrokerProbe

    probe = BrokerProbe("127.0.0.1:9", timeout_s=5.0)
    await probe.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await probe.ends([("a", 0)])
    assert probe._consumer is None

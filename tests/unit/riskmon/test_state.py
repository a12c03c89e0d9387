"""Identifier state: window counts and trims agree with plain Redis sorted-set semantics."""

from __future__ import annotations

import random

import pytest

from riskmon.state import (
    MAX_IDENT_EVENTS,
    MAX_IDENT_FRAUD,
    MAX_IDENT_USERS,
    WEEK,
    IdentState,
    _trim_zset,
)

T0 = 1_800_000_000.0


def naive_counts(
    ident: IdentState, ts: float, present: str = ""
) -> tuple[int, int, int, int, int, int, float]:
    """Counts by scanning every member: the definition the state must agree with. Each
    window ends at ``ts``; ``present``: the user of an event at ``ts``, in every user
    window even when the state has seen that user later (the event arrived late). Counts
    saturate at what a saved identifier holds (MAX_IDENT_USERS, MAX_IDENT_EVENTS)."""

    def window(zset: dict[str, float], since: float) -> int:
        return sum(1 for t in zset.values() if since <= t <= ts)

    me = 1 if present and ident.users.get(present, -1.0) > ts else 0
    h, d, w = ts - 3600.0, ts - 86400.0, ts - WEEK
    marked = sum(1 for t in ident.fraud.values() if t <= ts)
    held = min(len(ident.users), MAX_IDENT_USERS)  # what a saved identifier holds at most
    share = (1.0 if marked >= MAX_IDENT_FRAUD else marked / held) if ident.users else 0.0
    mu, me_ = MAX_IDENT_USERS, MAX_IDENT_EVENTS
    return (
        min(mu, window(ident.users, h) + me),
        min(mu, window(ident.users, d) + me),
        min(mu, window(ident.users, w) + me),
        min(me_, window(ident.events, h)),
        min(me_, window(ident.events, d)),
        min(me_, window(ident.events, w)),
        min(share, 1.0),
    )


@pytest.mark.parametrize("seed", range(4))
def test_counts_and_trims_match_a_full_scan(seed: int) -> None:
    """Out-of-order times, repeated users and event ids, trims between batches."""
    rng = random.Random(seed)
    ident = IdentState()
    now = T0
    for batch in range(60):
        for i in range(rng.randrange(1, 40)):
            now += rng.expovariate(1 / 900.0)
            ts = now - rng.choice([0.0, 0.0, rng.uniform(0, 3 * 86400.0)])  # some arrive late
            user = f"u{rng.randrange(300)}" if rng.random() < 0.9 else ""
            event = f"e{batch}-{i}" if rng.random() < 0.95 else f"e{rng.randrange(50)}"
            ident.add(user, event, ts)
            if rng.random() < 0.02 and user:
                ident.mark_fraud(user, ts + rng.choice([-3600.0, 0.0, 3600.0]))
            assert ident.counts(ts) == naive_counts(ident, ts)
        expected_users = _trim_zset(dict(ident.users), now - WEEK, MAX_IDENT_USERS)
        expected_events = _trim_zset(dict(ident.events), now - WEEK, MAX_IDENT_EVENTS)
        ident.clear_changes()
        ident.trim(now)
        assert ident.users == expected_users and ident.events == expected_events
        assert ident.counts(now) == naive_counts(ident, now)


def test_state_loaded_from_elsewhere_counts_the_same() -> None:
    """A state built from stored sorted sets (as RedisStore loads it) counts like one grown here."""
    grown = IdentState()
    for i in range(300):
        grown.add(f"u{i % 7}", f"e{i}", T0 + 60.0 * i)
    loaded = IdentState(users=dict(grown.users), events=dict(grown.events))
    for ts in (T0, T0 + 3600.0, T0 + 6 * 3600.0, T0 + 20 * 86400.0):
        assert loaded.counts(ts) == grown.counts(ts) == naive_counts(grown, ts)
    loaded.events["late"] = T0 + 5.0  # a member written directly is still counted
    assert loaded.counts(T0 + 3600.0) == naive_counts(loaded, T0 + 3600.0)


@pytest.mark.parametrize("seed", range(4))
def test_record_and_trims_with_tied_times_match_a_full_scan(seed: int) -> None:
    """``record`` (add + counts in one call) and the in-place trim agree with the
    definitions when many members share a time, so ties fall at the trim's cut."""
    rng = random.Random(100 + seed)
    ident, twin = IdentState(), IdentState()
    now = T0
    for batch in range(80):
        for i in range(rng.randrange(5, 60)):
            now += rng.choice([0.0, 0.0, 60.0, 3600.0])
            ts = now - rng.choice([0.0, 3600.0, 86400.0 * rng.randrange(0, 9)])
            user = f"u{rng.randrange(400)}"
            event = f"e{batch}-{i}"
            assert ident.record(user, event, ts) == naive_counts_after(twin, user, event, ts)
        expected_users = _trim_zset(dict(ident.users), now - WEEK, MAX_IDENT_USERS)
        expected_events = _trim_zset(dict(ident.events), now - WEEK, MAX_IDENT_EVENTS)
        for state in (ident, twin):
            state.clear_changes()
            state.trim(now)
        assert ident.users == expected_users and ident.events == expected_events
        assert sorted(ident.users.values()) == ident._user_ts
        assert sorted(ident.events.values()) == ident._event_ts


def naive_counts_after(
    ident: IdentState, user: str, event: str, ts: float
) -> tuple[int, int, int, int, int, int, float]:
    ident.add(user, event, ts)
    return naive_counts(ident, ts, present=user)

"""The Redis store's client: how it treats a Redis that stops answering."""

from __future__ import annotations

from typing import Any

import redis

from riskmon.settings import Settings
from riskmon.state import MAX_IDENT_FRAUD
from riskmon.store import (
    MAX_USER_SEEN,
    SAVE_USER,
    SCRIPT_SHAS,
    BatchState,
    MemoryStore,
    Needs,
    RedisStore,
    user_keys,
)

T0 = 1_800_000_000.0


def test_a_hung_redis_fails_a_round_trip_at_the_socket_timeout_without_retries() -> None:
    """The client retries once a connection that broke (a restarted Redis), never a
    timeout: redis-py's default would retry a hung Redis ten times, so a batch failed
    after about two minutes where on-call expects the socket timeout."""
    store = RedisStore.from_settings(Settings.load(env={}, config_file=None))
    kwargs = store.r.connection_pool.connection_kwargs
    retry = kwargs["retry"]
    assert kwargs["socket_timeout"] == 10
    assert retry.get_retries() == 1
    errors = retry._supported_errors
    assert any(issubclass(redis.exceptions.ConnectionError, e) for e in errors)
    assert not any(issubclass(redis.exceptions.TimeoutError, e) for e in errors)
    assert not any(issubclass(TimeoutError, e) for e in errors)


def test_the_memory_store_keeps_fraud_marks_on_an_identifier_up_to_the_cap() -> None:
    """Fraud marks on one identifier are kept up to MAX_IDENT_FRAUD, whatever the number
    of batches that bring them: a batch loads at most that many, and the identifier's
    fraud share is 1, as it is with every mark, also while a batch adds users past the
    number an identifier keeps."""
    store = MemoryStore()
    for start in range(0, MAX_IDENT_FRAUD + 50, 25):
        state = BatchState()
        state.fraud_marks = [("ip:1", f"u{k}", T0 - 60.0) for k in range(start, start + 25)]
        store.save(state)
    state = store.load(Needs(users=(), idents=("ip:1",), events=()))
    ident = state.idents["ip:1"]
    assert len(ident.fraud) == MAX_IDENT_FRAUD
    ident.record("u0", "e1", T0)
    assert ident.counts(T0)[-1] == 1.0
    for k in range(MAX_IDENT_FRAUD + 20):
        assert ident.record(f"v{k}", f"f{k}", T0 + k)[-1] == 1.0
    assert len(ident.users) > MAX_IDENT_FRAUD and ident.counts(T0 + 500)[-1] == 1.0


def test_a_user_document_that_cannot_be_written_does_not_stop_the_save() -> None:
    """A document JSON cannot hold (a whole number past 64 bits) is a fault of the code;
    the save writes every other user's document and leaves that one as stored, rather
    than failing the batch, and every later one of its partitions, for ever."""
    from riskmon.state import new_user_state

    store = RedisStore(object(), "rm:", ttl_s=3600)
    sent: list[Any] = []
    store._execute = lambda cmds, transaction: sent.extend(cmds) or []  # type: ignore[method-assign]
    state = BatchState()
    state.now = T0
    for uid in ("u1", "u2"):
        state.users[uid] = new_user_state(T0)
        state.new_seen[f"e-{uid}"] = (uid, T0)
    state.users["u1"]["repay"][2] = 10**30
    store.save_now(state)
    documents = {args[3] for _, args in sent if args[:2] == ("EVALSHA", SCRIPT_SHAS[SAVE_USER])}
    assert documents == {user_keys("rm:", "u2")[0]}


def _seen_batch(store: MemoryStore, marks: list[tuple[str, str, float]]) -> None:
    """Save a batch that marks ``(event id, user id, event time)`` seen."""
    state = BatchState()
    for eid, uid, ts in marks:
        state.user_for(uid, ts)
        state.new_seen[eid] = (uid, ts)
        state.now = max(state.now, ts)
    store.save(state)


def _seen_of(store: MemoryStore, marks: list[tuple[str, str, float]]) -> set[str]:
    needs = Needs(users=(), idents=(), events=tuple((eid, uid) for eid, uid, _ in marks))
    return store.load(needs).seen


def test_the_memory_store_keeps_a_users_seen_marks_for_the_seen_ttl_as_redis_does() -> None:
    """A user's seen marks saved more than the seen TTL before a save that adds marks
    to the user go, as :data:`SAVE_USER` trims them in Redis (the memory store's clock:
    the newest batch time saved): a repeat of such an event is not seen (decided again,
    as a worker decides it), and a user's marks do not pile up for as long as the user
    has events. Another user's marks stay until that user's next save."""
    day = 86400.0
    store = MemoryStore(seen_ttl_s=14 * day)
    old = [(f"e{k}", "u1", T0 + k * day) for k in range(30)]
    other = [("o1", "u2", T0)]
    _seen_batch(store, other)
    for mark in old:
        _seen_batch(store, [mark])
    newest = T0 + 29 * day
    kept = {eid for eid, _, ts in old if ts >= newest - 14 * day}
    assert _seen_of(store, old) == kept
    assert len(kept) == 15
    assert _seen_of(store, other) == {"o1"}
    assert len(store.seen) == len(kept) + 1


def test_the_memory_store_keeps_at_most_max_user_seen_marks_per_user() -> None:
    """However many events a user has within the seen TTL, the memory store keeps its
    newest MAX_USER_SEEN seen marks, as :data:`SAVE_USER` does in Redis."""
    store = MemoryStore(seen_ttl_s=86400)
    marks = [(f"e{k:06d}", "u1", T0 + k * 0.01) for k in range(MAX_USER_SEEN + 100)]
    _seen_batch(store, marks[: MAX_USER_SEEN // 2])
    _seen_batch(store, marks[MAX_USER_SEEN // 2 :])
    assert _seen_of(store, marks) == {eid for eid, _, _ in marks[100:]}
    assert len(store.seen) == MAX_USER_SEEN

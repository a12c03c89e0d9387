"""The Redis store's client: how it treats a Redis that stops answering."""

from __future__ import annotations

from typing import Any

import redis

from riskmon.settings import Settings
from riskmon.state import MAX_IDENT_FRAUD
from riskmon.store import (
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

"""The Redis store's client: how it treats a Redis that stops answering."""

from __future__ import annotations

import redis

from riskmon.settings import Settings
from riskmon.store import RedisStore


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

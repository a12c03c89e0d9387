"""Against the running local stack (`riskmon stack up`): Kafka and Redis really answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from riskmon.settings import Settings
from riskmon.stack import stack_status
from riskmon.testing import require_stack, stack_settings
from riskmon.topics import (
    CREATED,
    EXISTS,
    connect_admin,
    delete_topics,
    ensure_topics,
    topic_partitions,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def live_settings() -> Settings:
    settings = stack_settings()
    require_stack(settings)
    return settings


@pytest.fixture
async def fresh_topics(live_settings: Settings) -> AsyncIterator[list[str]]:
    """Names of topics that do not exist yet; deleted again after the test."""
    run = uuid.uuid4().hex[:10]
    names = [f"riskmon.test.{run}.a", f"riskmon.test.{run}.b"]
    yield names
    await delete_topics(live_settings, names)


def test_status_reports_kafka_and_redis_up(live_settings: Settings) -> None:
    status = stack_status(live_settings)
    assert status["up"] is True
    for name in ("kafka", "redis"):
        assert status[name]["answers"] is True, name
        if status[name]["pid"] is not None:
            assert status[name]["alive"] is True, name
    assert status["kafka"]["address"] == live_settings.kafka.bootstrap


async def test_kafka_round_trip_on_a_fresh_topic(
    live_settings: Settings, fresh_topics: list[str]
) -> None:
    topic = fresh_topics[0]
    assert (await ensure_topics(live_settings, [topic], partitions=1))[topic] == CREATED
    bootstrap = live_settings.kafka.bootstrap
    payloads = [f"event-{i}-{uuid.uuid4().hex}".encode() for i in range(5)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        first = None
        for payload in payloads:
            sent = await producer.send_and_wait(topic, payload, key=b"k")
            first = sent if first is None else first
    finally:
        await producer.stop()
    assert first is not None
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, first.partition)
        consumer.assign([tp])
        consumer.seek(tp, first.offset)
        got = [(await consumer.getone()).value for _ in payloads]
    finally:
        await consumer.stop()
    assert got == payloads


def test_redis_set_get_round_trip(live_settings: Settings) -> None:
    r = live_settings.redis
    client = redis.Redis(host=r.host, port=r.port, db=r.db, socket_timeout=5)
    key = f"{r.key_prefix}test:{uuid.uuid4().hex}"
    try:
        assert client.set(key, "value-1", ex=60)
        assert client.get(key) == b"value-1"
        assert 0 < client.ttl(key) <= 60
    finally:
        client.delete(key)
        client.close()


async def test_ensure_topics_is_idempotent_with_the_configured_partitions(
    live_settings: Settings, fresh_topics: list[str]
) -> None:
    first = await ensure_topics(live_settings, fresh_topics)
    assert first == {name: CREATED for name in fresh_topics}
    again = await ensure_topics(live_settings, fresh_topics)
    assert again == {name: EXISTS for name in fresh_topics}
    admin = await connect_admin(live_settings)
    try:
        counts = await topic_partitions(admin, fresh_topics)
    finally:
        await admin.close()
    assert counts == {name: live_settings.kafka.partitions for name in fresh_topics}


async def test_riskmon_topics_exist_after_stack_up(live_settings: Settings) -> None:
    result = await ensure_topics(live_settings)
    assert set(result) == set(live_settings.topics.all)
    assert set(result.values()) == {EXISTS}

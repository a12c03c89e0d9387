"""Numbers in clear through the real broker and Redis: none reaches an output, a Redis key
or value, the log or /metrics."""

from __future__ import annotations

from typing import Any

import orjson
import redis
from aiokafka import AIOKafkaProducer

#: a mobile number, another, and an identity number (valid check character), in clear
PHONE, OTHER_PHONE, ID_NUMBER = "13812345678", "13912345678", "11010519491231002X"
#: what must appear nowhere: each number's digits, also where a grouping was taken out
NEEDLES = ("13812345678", "1381234", "13912345678", "1391234", "11010519491231002", "12345678")


def _redis_text(client: redis.Redis, prefix: str) -> str:
    """Every key name under ``prefix`` and everything its value holds, as one text."""
    parts: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == b"zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
    return b"\n".join(parts).decode("utf-8", "replace")


async def test_numbers_in_clear_in_the_ip_in_odd_forms_or_beside_another_fault_go_nowhere(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """A phone number in the IP (which Riskmon keys by), one grouped by en dashes in a
    hash, one sent as the amount (refused as a wrong type) and an identity number in the
    OS version of a mis-keyed event: each is dead-lettered with the number withheld, and
    no dead letter, decision, Redis key or value, log line or metric holds a number."""
    settings = isolated.settings
    worker = start_worker(isolated)
    app = {
        "event_id": "app-ok",
        "event_type": "application",
        "ts": "2026-11-28T09:00:00Z",
        "user_id": "u1",
        "application_id": "a1",
        "device_id": "d1",
        "ip": "121.33.141.33",
        "amount": 1000.0,
        "product": "cash_loan",
    }
    device = {
        "event_id": "dev-ok",
        "event_type": "device",
        "ts": "2026-11-28T09:00:01Z",
        "user_id": "u2",
        "device_id": "d2",
        "kind": "login",
    }
    sends: list[tuple[str, bytes, dict[str, Any]]] = [
        (settings.topics.applications, b"u1", app),
        (settings.topics.devices, b"u2", device),
        (
            settings.topics.applications,
            b"u3",
            {**app, "event_id": "e-ip", "user_id": "u3", "ip": PHONE},
        ),
        (
            settings.topics.devices,
            b"u4",
            {
                **device,
                "event_id": "e-dash",
                "user_id": "u4",
                "sim_hash": "139\u20131234\u20135678",
            },
        ),
        (
            settings.topics.applications,
            b"u5",
            {**app, "event_id": "e-amount", "user_id": "u5", "amount": OTHER_PHONE},
        ),
        (
            settings.topics.devices,
            b"u9",
            {**device, "event_id": "e-key", "user_id": "u6", "os_version": ID_NUMBER},
        ),
    ]
    for topic, key, event in sends:
        await producer.send(topic, orjson.dumps(event), key=key)
    await producer.flush()

    seen = await read_topics(
        settings,
        [settings.topics.decisions, settings.topics.deadletter],
        until=lambda s: (
            len(s[settings.topics.decisions]) >= 2 and len(s[settings.topics.deadletter]) >= 4
        ),
    )
    decisions, dead = seen[settings.topics.decisions], seen[settings.topics.deadletter]
    assert sorted(d["source_event_id"] for d in decisions) == ["app-ok", "dev-ok"]
    codes = {d["event_id"]: d["code"] for d in dead}
    assert codes == {
        "e-ip": "personal_data_in_clear",
        "e-dash": "personal_data_in_clear",
        "e-amount": "wrong_type",
        "e-key": "key_mismatch",
    }
    kept = {d["event_id"]: orjson.loads(d["value"]) for d in dead}
    assert kept["e-ip"]["ip"] == kept["e-dash"]["sim_hash"] == "[withheld]"
    assert kept["e-amount"]["amount"] == kept["e-key"]["os_version"] == "[withheld]"

    client = redis.Redis(host=settings.redis.host, port=settings.redis.port, db=settings.redis.db)
    try:
        stored = _redis_text(client, settings.redis.key_prefix)
    finally:
        client.close()
    assert "121.33.141.33" in stored  # the valid event's IP is kept: the scan sees state
    outputs = orjson.dumps(seen).decode()
    log, metrics = worker.log.read_text(), worker.metrics()
    for needle in NEEDLES:
        assert needle not in outputs and needle not in stored
        assert needle not in log and needle not in metrics
    assert worker.alive(), log[-3000:]

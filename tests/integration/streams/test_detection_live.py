"""Detection through the real broker and Redis: takeover, live rules, restarts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from riskmon.contract import format_ts, parse_ts

BASE = parse_ts(
    "2026-10-01T08:00:00.000Z"
)  # the whole sequence in the past: workers refuse later times


def at(minutes: float) -> str:
    return format_ts(BASE + minutes * 60)


def takeover_sequence(user: str = "victim") -> list[dict[str, Any]]:
    """An honest history, then failed logins, SIM change, password reset, a new device,
    a new payout account, a quick loan and the cash-out."""
    old, new = "dev-own-1", "dev-thief-9"
    ev: list[dict[str, Any]] = []

    def dev(i: int, m: float, kind: str, device: str, **kw: Any) -> None:
        ev.append(
            {
                "event_id": f"{user}-d{i}",
                "event_type": "device",
                "ts": at(m),
                "user_id": user,
                "device_id": device,
                "kind": kind,
                "ip": "36.1.1.1",
                **kw,
            }
        )

    def txn(i: int, m: float, kind: str, amount: float, **kw: Any) -> None:
        ev.append(
            {
                "event_id": f"{user}-t{i}",
                "event_type": "transaction",
                "ts": at(m),
                "user_id": user,
                "txn_id": f"{user}-tx{i}",
                "kind": kind,
                "amount": amount,
                "status": "success",
                **kw,
            }
        )

    dev(1, 0, "install", old, sim_hash="sim-own", loan_apps_installed=1)
    txn(1, 10, "card_bind", 0.0, account_hash="acct-own", device_id=old)
    ev.append(
        {
            "event_id": f"{user}-a1",
            "event_type": "application",
            "ts": at(60),
            "user_id": user,
            "application_id": f"{user}-app1",
            "device_id": old,
            "amount": 2000.0,
            "product": "cash_loan",
            "declared_monthly_income": 8000.0,
        }
    )
    txn(2, 90, "disbursement", 2000.0, account_hash="acct-own", loan_id=f"{user}-app1")
    txn(3, 60 * 24 * 20, "repayment", 2100.0, account_hash="acct-own", days_past_due=0)
    t = 60 * 24 * 30
    dev(2, t, "login_failed", new)
    dev(3, t + 1, "login_failed", new)
    dev(4, t + 2, "login_failed", new)
    dev(5, t + 4, "sim_change", new, sim_hash="sim-thief")
    dev(6, t + 5, "password_reset", new)
    dev(7, t + 6, "login", new)
    txn(4, t + 8, "card_bind", 0.0, account_hash="acct-mule-77", device_id=new)
    ev.append(
        {
            "event_id": f"{user}-a2",
            "event_type": "application",
            "ts": at(t + 10),
            "user_id": user,
            "application_id": f"{user}-app2",
            "device_id": new,
            "amount": 15000.0,
            "product": "cash_loan",
            "declared_monthly_income": 8000.0,
        }
    )
    txn(
        5,
        t + 14,
        "disbursement",
        15000.0,
        account_hash="acct-mule-77",
        device_id=new,
        loan_id=f"{user}-app2",
    )
    txn(6, t + 16, "withdrawal", 14800.0, account_hash="acct-mule-77", device_id=new)
    return ev


TOPIC = {"application": "applications", "device": "devices", "transaction": "transactions"}


async def send_all(producer: AIOKafkaProducer, settings: Any, events: list[dict[str, Any]]) -> None:
    for e in events:
        topic = getattr(settings.topics, TOPIC[e["event_type"]])
        await producer.send(topic, orjson.dumps(e), key=e["user_id"].encode())
    await producer.flush()


async def test_account_takeover_is_flagged_and_frozen_before_the_cash_out(
    isolated_any_redis, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """The takeover yields an alert and a freeze adjustment, both caused by events before
    the cash-out and produced before the cash-out's decision; on one Redis server and on
    a Redis Cluster, where the approval service reads the frozen profile."""
    isolated = isolated_any_redis
    settings = isolated.settings
    worker = start_worker(isolated)
    events = takeover_sequence()
    cash_out = events[-1]
    await send_all(producer, settings, events)
    t = settings.topics
    seen = await read_topics(
        settings,
        [t.decisions, t.alerts, t.adjustments],
        until=lambda s: len(s[t.decisions]) >= len(events),
    )
    decisions = {d["source_event_id"]: d for d in seen[t.decisions]}
    assert len(decisions) == len(events)
    cash_ts = parse_ts(cash_out["ts"])
    alerts = [a for a in seen[t.alerts] if parse_ts(a["event_ts"]) < cash_ts]
    freezes = [
        a
        for a in seen[t.adjustments]
        if a["action"] == "freeze" and parse_ts(a["event_ts"]) < cash_ts
    ]
    assert alerts, seen[t.alerts]
    assert freezes, seen[t.adjustments]
    assert all(a["user_id"] == "victim" for a in alerts + freezes)
    decided_cash_out = parse_ts(decisions[cash_out["event_id"]]["ts"])
    assert parse_ts(freezes[0]["ts"]) <= decided_cash_out
    assert freezes[0]["reasons"], "an action says why"
    assert decisions[cash_out["event_id"]]["decision"] in ("review", "decline")
    # the approval service sees the account as frozen
    import redis
    from redis.cluster import RedisCluster

    r = redis.Redis if not settings.redis.cluster else RedisCluster
    client = r(host=settings.redis.host, port=settings.redis.port)
    profile = orjson.loads(client.get(f"{settings.redis.key_prefix}profile:user:victim"))
    client.close()
    assert "freeze" in profile["actions"]
    assert worker.alive()


def rule(version: int, when: str, **kw: Any) -> dict[str, Any]:
    return {
        "rule_id": "live_test_rule",
        "version": version,
        "applies_to": ["device"],
        "when": when,
        "score": 0.9,
        "severity": "high",
        "action": "review",
        "mode": "active",
        "reason": "test rule",
        "enabled": True,
        "author": "tests",
        **kw,
    }


def device_event(i: int, kind: str) -> dict[str, Any]:
    return {
        "event_id": f"live-{i}",
        "event_type": "device",
        "ts": at(i),
        "user_id": f"lu{i}",
        "device_id": f"ld{i}",
        "kind": kind,
    }


async def wait_for(pred: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.3)
    raise AssertionError("condition not reached in time")


async def test_live_rule_update_and_broken_rule_rejected(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """A new rule version on risk.rules judges the next events; a rule that does not
    compile is dead-lettered and the previous version keeps working."""
    settings = isolated.settings
    t = settings.topics
    worker = start_worker(isolated)

    def version() -> int | None:
        h = worker.health() or {}
        return (h.get("rules") or {}).get("live_test_rule")

    await producer.send_and_wait(
        t.rules, orjson.dumps(rule(1, "event.kind == 'fingerprint'")), key=b"live_test_rule"
    )
    await wait_for(lambda: version() == 1)
    await send_all(
        producer, settings, [device_event(1, "fingerprint"), device_event(2, "app_open")]
    )
    await wait_for(lambda: (worker.health() or {}).get("decisions", 0) >= 2)
    await producer.send_and_wait(
        t.rules, orjson.dumps(rule(2, "event.kind == 'app_open'")), key=b"live_test_rule"
    )
    await wait_for(lambda: version() == 2)
    await send_all(
        producer, settings, [device_event(3, "fingerprint"), device_event(4, "app_open")]
    )
    await wait_for(lambda: (worker.health() or {}).get("decisions", 0) >= 4)
    await producer.send_and_wait(
        t.rules, orjson.dumps(rule(3, "event.kind == ")), key=b"live_test_rule"
    )
    await wait_for(lambda: (worker.health() or {}).get("rules_rejected", 0) >= 1)
    await send_all(producer, settings, [device_event(5, "app_open")])

    seen = await read_topics(
        settings,
        [t.decisions, t.deadletter],
        until=lambda s: len(s[t.decisions]) >= 5 and s[t.deadletter],
    )
    hit = {d["source_event_id"]: "live_test_rule" in d["rule_ids"] for d in seen[t.decisions]}
    assert hit == {"live-1": True, "live-2": False, "live-3": False, "live-4": True, "live-5": True}
    (dead,) = seen[t.deadletter]
    assert dead["code"] == "rule_rejected" and "live_test_rule" in dead["reason"]
    assert version() == 2
    assert worker.alive()


async def test_model_state_is_restored_from_its_checkpoint_after_a_restart(
    isolated, start_worker, producer: AIOKafkaProducer
) -> None:
    """What the models learned survives a worker restart: the checkpoint written to
    Redis at shutdown is loaded by the next worker before it consumes anything."""
    settings = isolated.settings
    worker = start_worker(isolated, "first")
    events = [
        {
            "event_id": f"warm-{i}",
            "event_type": "device",
            "ts": at(i / 10),
            "user_id": f"wu{i % 80}",
            "device_id": f"wd{i % 80}",
            "kind": "app_open",
            "loan_apps_installed": i % 4,
        }
        for i in range(700)
    ]
    await send_all(producer, settings, events)

    def device_models(w: Any) -> dict[str, Any]:
        return ((w.health() or {}).get("models") or {}).get("types", {}).get("device", {})

    await wait_for(lambda: device_models(worker).get("scored", 0) >= 700, timeout=90)
    before = device_models(worker)
    assert "zscore" in before["ready"], before
    worker.stop()
    import redis

    r = redis.Redis(host=settings.redis.host, port=settings.redis.port)
    assert r.get(f"{settings.redis.key_prefix}models"), "no checkpoint in Redis"

    again = start_worker(isolated, "second")
    after = device_models(again)
    assert after["scored"] == before["scored"]
    assert after["ready"] == before["ready"]
    assert again.alive()

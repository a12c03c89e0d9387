"""The Redis feature store and the in-memory one give identical features."""

from __future__ import annotations

import random
from typing import Any

import redis

from riskmon.features import FEATURE_NAMES, ident_keys, observe
from riskmon.settings import Settings
from riskmon.store import BatchState, MemoryStore, RedisStore, ident_keys_of, needs_for

T0 = 1_800_000_000.0


def traffic(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """Events that share devices, IPs, cards and users, with labels mixed in."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        ts = T0 + i * 37.0 + (i // 500) * 4 * 86400.0  # three stretches, days apart
        user = f"u{rng.randrange(40)}"
        common = {
            "event_id": f"e{i}",
            "user_id": user,
            "ts": ts,
            "device_id": f"d{rng.randrange(15)}",
            "ip": f"10.0.{rng.randrange(6)}.1",
        }
        r = rng.random()
        if r < 0.3:
            out.append(
                {
                    **common,
                    "event_type": "application",
                    "application_id": f"a{i}",
                    "amount": float(rng.randrange(500, 9000, 500)),
                    "product": "cash_loan",
                    "declared_monthly_income": float(rng.randrange(3000, 30000, 1000)),
                    "bank_card_hash": f"c{rng.randrange(10)}",
                    "phone_hash": f"p{rng.randrange(30)}",
                }
            )
        elif r < 0.6:
            out.append(
                {
                    **common,
                    "event_type": "device",
                    "kind": rng.choice(["login", "login_failed", "sim_change", "app_open"]),
                    "sim_hash": f"s{rng.randrange(20)}",
                    "wifi_hash": f"w{rng.randrange(5)}",
                    "is_emulator": rng.random() < 0.2,
                    "loan_apps_installed": rng.randrange(9),
                    "geo": {"lat": 30 + rng.random(), "lon": 120 + rng.random()},
                }
            )
        elif r < 0.95:
            out.append(
                {
                    **common,
                    "event_type": "transaction",
                    "txn_id": f"t{i}",
                    "kind": rng.choice(
                        ["disbursement", "withdrawal", "card_bind", "repayment", "transfer_out"]
                    ),
                    "amount": float(rng.randrange(0, 5000)),
                    "status": "success",
                    "account_hash": f"c{rng.randrange(10)}",
                }
            )
        else:
            out.append(
                {
                    "event_id": f"l{i}",
                    "event_type": "label",
                    "user_id": user,
                    "ts": ts,
                    "target_type": "user",
                    "target_id": user,
                    "label": "fraud",
                }
            )
    return out


def run_batch(state: BatchState, batch: list[dict[str, Any]]) -> list[dict[str, float]]:
    """A minimal core: observe every event, propagate fraud labels like the core does."""
    feats = []
    for ev in batch:
        ts = ev["ts"]
        state.now = max(state.now, ts)
        uid = ev["user_id"]
        user = state.user_for(uid, ts)
        assert user is not None
        state.new_seen[ev["event_id"]] = ts
        if ev["event_type"] == "label":
            if not user["fraud"]:
                user["fraud"] = True
                state.fraud_marks.extend((k, uid) for k in user["idents"])
            continue
        feats.append(observe(ev, ts, user, state.idents))
    return feats


async def test_same_events_same_features_on_redis_and_memory(stack: Settings) -> None:
    """1,500 events in batches of 100 through both stores: every feature is equal."""
    prefix = f"eq{random.randrange(10**9)}:"
    client = redis.Redis(host=stack.redis.host, port=stack.redis.port, db=stack.redis.db)
    redis_store = RedisStore(client, prefix, ttl_s=3600)
    memory = MemoryStore()
    events = traffic(1500)
    got_redis: list[dict[str, float]] = []
    got_memory: list[dict[str, float]] = []
    try:
        for start in range(0, len(events), 100):
            batch = events[start : start + 100]
            needs = needs_for(batch, ident_keys)
            state_r = await redis_store.load(needs)
            got_redis += run_batch(state_r, batch)
            await redis_store.save(state_r)
            state_m = memory.load(needs)
            got_memory += run_batch(state_m, batch)
            memory.save(state_m)
        # the state written to Redis really is there, with a TTL
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        assert any(k.startswith(f"{prefix}i:{{device:".encode()) for k in keys)
        assert 0 < client.ttl(ident_keys_of(prefix, "device:d1")[1]) <= 3600
        assert 0 < client.ttl(f"{prefix}u:u1") <= 3600
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    assert len(got_redis) == len(got_memory) > 1000
    for i, (fr, fm) in enumerate(zip(got_redis, got_memory, strict=True)):
        assert fr == fm, (i, {k: (fr[k], fm[k]) for k in FEATURE_NAMES if fr[k] != fm[k]})
    # and the traffic exercised the shared-identifier features
    assert max(f["device_users_7d"] for f in got_memory) > 5
    assert max(f["ip_fraud_share"] for f in got_memory) > 0

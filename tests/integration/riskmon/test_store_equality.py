"""The Redis feature store, on one server and on a Redis Cluster, gives the features the
in-memory one gives; its saves are safe to retry."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from redis.cluster import RedisCluster

from riskmon.contract import format_ts
from riskmon.core import Core
from riskmon.features import FEATURE_NAMES, ident_keys, observe
from riskmon.settings import Settings
from riskmon.stack import LocalRedisCluster
from riskmon.state import MAX_IDENT_FRAUD
from riskmon.store import (
    SAVE_USER,
    SCRIPT_SHAS,
    BatchState,
    Command,
    MemoryStore,
    Needs,
    RedisStore,
    ident_keys_of,
    needs_for,
    profile_key,
    user_keys,
)

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
                    **({"user_id": None} if i % 7 == 0 else {}),  # before login: no user
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


def decide_batch(state: BatchState, batch: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """A minimal core: skip events seen before, observe the others, propagate fraud labels
    like the core does. Returns the features of each event decided, by event id."""
    feats: dict[str, dict[str, float]] = {}
    for ev in batch:
        if ev["event_id"] in state.seen:
            continue
        ts = ev["ts"]
        state.now = max(state.now, ts)
        uid = ev["user_id"] or ""
        user = state.user_for(uid, ts)
        state.new_seen[ev["event_id"]] = (uid, ts)
        if ev["event_type"] == "label":
            assert user is not None
            if not user["fraud"]:
                user["fraud"] = True
                state.fraud_marks.extend((k, uid, ts) for k in user["idents"])
            continue
        feats[ev["event_id"]] = observe(ev, ts, user, state.idents)
    return feats


@pytest.fixture(params=["server", "cluster"])
def target(request: pytest.FixtureRequest, stack: Settings) -> Iterator[Any]:
    """A Redis client of the stack's server, or of the tests' three-node cluster."""
    client: Any
    if request.param == "server":
        client = redis.Redis(host=stack.redis.host, port=stack.redis.port, db=stack.redis.db)
    else:
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster(host=cluster.host, port=cluster.ports[0])
    yield client
    client.close()


@pytest.fixture
def prefix(target: Any) -> Iterator[str]:
    """A key prefix of the test's own; its keys are removed after."""
    client = target
    name = f"eq{random.randrange(10**9)}:"
    yield name
    for key in list(client.scan_iter(match=f"{name}*", count=1000)):
        client.delete(key)


async def test_same_events_same_features_on_redis_and_memory(target: Any, prefix: str) -> None:
    """1,500 events in batches of 100 through both stores: every feature is equal, on one
    server and on a cluster (whose save takes two steps)."""
    client = target
    redis_store = RedisStore(client, prefix, ttl_s=3600)
    memory = MemoryStore()
    events = traffic(1500)
    got_redis: dict[str, dict[str, float]] = {}
    got_memory: dict[str, dict[str, float]] = {}
    for start in range(0, len(events), 100):
        batch = events[start : start + 100]
        needs = needs_for(batch, ident_keys)
        state_r = await redis_store.load(needs)
        got_redis |= decide_batch(state_r, batch)
        await redis_store.save(state_r)
        state_m = memory.load(needs)
        got_memory |= decide_batch(state_m, batch)
        memory.save(state_m)
    # the state written to Redis really is there, with a TTL
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    assert any(k.startswith(f"{prefix}i:{{device:".encode()) for k in keys)
    assert 0 < client.ttl(ident_keys_of(prefix, "device:d1")[1]) <= 3600
    assert all(0 < client.ttl(key) <= 3600 for key in user_keys(prefix, "u1"))
    assert len(got_redis) == len(got_memory) > 1000
    assert got_redis.keys() == got_memory.keys()
    for eid, fm in got_memory.items():
        fr = got_redis[eid]
        assert fr == fm, (eid, {k: (fr[k], fm[k]) for k in FEATURE_NAMES if fr[k] != fm[k]})
    # and the traffic exercised the shared-identifier features
    assert max(f["device_users_7d"] for f in got_memory.values()) > 5
    assert max(f["ip_fraud_share"] for f in got_memory.values()) > 0


async def test_events_saved_once_are_seen_on_the_next_load(target: Any, prefix: str) -> None:
    """After a save, loading the same batch marks every event seen, with or without a
    user; events of another batch are not. A user's marks last the seen TTL from their
    save (wall clock), whatever the events' times, in the memory store as in Redis."""
    client = target
    store = RedisStore(client, prefix, ttl_s=3600, seen_ttl_s=86400)
    events = traffic(300)
    first, second = events[:150], events[150:]
    assert any(not ev["user_id"] for ev in first)
    state = await store.load(needs_for(first, ident_keys))
    assert not state.seen
    assert len(decide_batch(state, first)) > 100
    await store.save(state)
    again = await store.load(needs_for(first + second, ident_keys))
    assert again.seen == {ev["event_id"] for ev in first}
    assert decide_batch(again, first) == {}
    # a user's marks are kept for the seen TTL from their save, in wall-clock time,
    # however far apart the events' times (these span more than the hour a store keeps
    # them for); a save of the user past that drops them
    at = [1_000_000.0]
    short = RedisStore(client, prefix + "short:", ttl_s=3600, clock=lambda: at[0])
    assert first[-1]["ts"] - first[0]["ts"] > 3600
    state = await short.load(needs_for(first, ident_keys))
    decide_batch(state, first)
    await short.save(state)
    again = await short.load(needs_for(first, ident_keys))
    assert again.seen == {ev["event_id"] for ev in first}
    at[0] += 7200
    state = await short.load(needs_for(second, ident_keys))
    decide_batch(state, second)
    await short.save(state)
    again = await short.load(needs_for(first, ident_keys))
    saved_again = {ev["user_id"] for ev in second if ev["user_id"]}
    kept = {ev["event_id"] for ev in first if not ev["user_id"] or ev["user_id"] not in saved_again}
    assert again.seen == kept
    assert len(kept) < len(first)  # some were dropped
    # and the in-memory store, with that TTL and clock, keeps the same marks of users
    # (Redis expires the mark of an event without a user by its key's TTL, in real
    # seconds, not by this clock: the memory store drops those at the second save)
    at[0] = 1_000_000.0
    memory = MemoryStore(seen_ttl_s=3600, clock=lambda: at[0])
    for batch in (first, second):
        state = memory.load(needs_for(batch, ident_keys))
        decide_batch(state, batch)
        memory.save(state)
        at[0] += 7200
    loose = {ev["event_id"] for ev in first if not ev["user_id"]}
    assert memory.load(needs_for(first, ident_keys)).seen == kept - loose


async def test_scripts_a_server_lost_are_loaded_again(target: Any, prefix: str) -> None:
    """After every server forgot the scripts (a restart, a failover), the next load and
    save load them again and go through."""
    client = target
    store = RedisStore(client, prefix, ttl_s=3600, seen_ttl_s=86400)
    events = traffic(200)
    nodes = client.get_primaries() if isinstance(client, RedisCluster) else [None]

    def flush() -> None:
        for node in nodes:
            (client if node is None else client.get_redis_connection(node)).script_flush()

    for batch in (events[:100], events[100:]):
        state = await store.load(needs_for(batch, ident_keys))
        assert len(decide_batch(state, batch)) > 50
        flush()  # between load and save
        await store.save(state)
        flush()  # between save and the next load
    again = await store.load(needs_for(events, ident_keys))
    assert again.seen == {ev["event_id"] for ev in events}


async def test_user_ids_with_braces_keep_their_keys_together(target: Any, prefix: str) -> None:
    """A user id with braces (``}`` first) still puts the user's document and seen marks
    in one slot: the save and the next load work, on a server and on a cluster."""
    client = target
    store = RedisStore(client, prefix, ttl_s=3600)
    odd = "}odd{id"
    batch = [{**ev, "user_id": odd} if ev["user_id"] else ev for ev in traffic(20) if ev["user_id"]]
    state = await store.load(needs_for(batch, ident_keys))
    assert len(decide_batch(state, batch)) > 10
    await store.save(state)
    again = await store.load(needs_for(batch, ident_keys))
    assert again.seen == {ev["event_id"] for ev in batch}
    assert again.users[odd]["n_apps"] == state.users[odd]["n_apps"]


class CutStore(RedisStore):
    """A cluster store whose next save loses its connection half way through step 2:
    step 1 ran, and half of the users' writes did."""

    armed = False

    def _execute(self, cmds: list[Command], *, transaction: bool) -> list[Any]:
        save_user = ("EVALSHA", SCRIPT_SHAS[SAVE_USER])
        if not self.armed or not any(words[:2] == save_user for _, words in cmds):
            return super()._execute(cmds, transaction=transaction)  # step 1 runs whole
        self.armed = False
        super()._execute(cmds[: len(cmds) // 2], transaction=transaction)
        raise redis.ConnectionError("connection lost half way through the save (test)")


async def test_a_cluster_save_cut_short_is_safe_to_retry(
    redis_cluster: LocalRedisCluster, stack: Settings
) -> None:
    """On a cluster, a save that stops half way through its users' writes and is retried
    (load, decide, save again) decides each unsaved event once more, skips the saved ones,
    and leaves every user document and identifier as a run without the failure does; the
    batches after it get the same features as the in-memory store."""
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.ports[0])
    prefix = f"cut{random.randrange(10**9)}:"
    store = CutStore(client, prefix, ttl_s=3600, seen_ttl_s=86400)
    memory = MemoryStore()
    events = traffic(800)
    try:
        for n, start in enumerate(range(0, len(events), 100)):
            batch = events[start : start + 100]
            needs = needs_for(batch, ident_keys)
            state_m = memory.load(needs)
            want = decide_batch(state_m, batch)
            memory.save(state_m)
            state = store.load_now(needs)
            got = decide_batch(state, batch)
            if n != 3:
                store.save_now(state)
                assert got == want, (n, diff(got, want))
                continue
            store.armed = True
            with pytest.raises(redis.ConnectionError):
                store.save_now(state)
            assert got == want  # the first attempt decided the whole batch
            retry = store.load_now(needs)
            again = decide_batch(retry, batch)
            store.save_now(retry)
            # some users' writes happened and some did not
            assert 0 < len(again) < len(got)
            assert retry.seen and set(again).isdisjoint(retry.seen)
            assert set(again) | retry.seen >= set(got)
        for uid, doc in memory.users.items():
            raw = client.get(user_keys(prefix, uid)[0])
            assert raw is not None and orjson.loads(raw) == doc, uid
        for key, ident in memory.idents.items():
            u, e = ident_keys_of(prefix, key)[:2]
            assert zset(client, u) == ident.users, key
            assert zset(client, e) == ident.events, key
    finally:
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
        client.close()


def zset(client: Any, key: str) -> dict[str, float]:
    return {m.decode(): s for m, s in client.zrange(key, 0, -1, withscores=True)}


def diff(got: dict[str, dict[str, float]], want: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The features that differ, by event id: (got, wanted)."""
    return {
        eid: {k: (got[eid][k], v) for k, v in f.items() if got[eid][k] != v}
        if eid in got
        else "missing"
        for eid, f in want.items()
        if got.get(eid) != f
    }


async def test_a_profile_keeps_the_decision_on_its_newest_event(target: Any, prefix: str) -> None:
    """Two workers write one device's profile in either order: the document of the newer
    event stays, in Redis as in memory; a newer one still replaces it."""

    def doc(ts: float, score: float) -> dict[str, Any]:
        return {"event_time": ts, "score": score, "decision": "pass", "event_id": f"e{ts:g}"}

    redis_store = RedisStore(target, prefix, ttl_s=3600)
    memory = MemoryStore()
    for ts, score in ((200.0, 0.9), (100.0, 0.1), (200.5, 0.4)):
        state = BatchState(profiles={"device:d1": doc(ts, score)})
        await redis_store.save(state)
        memory.save(state)
        stored = await redis_store.get_profile("device", "d1")
        assert stored == memory.get_profile("device", "d1")
        assert stored is not None
        assert stored["score"] == (0.9 if ts <= 200.0 else 0.4)
    # two documents of one event time, written in either order: the same one stays
    first, second = doc(300.0, 0.2), doc(300.0, 0.7)
    for key, order in (("d2", (first, second)), ("d3", (second, first))):
        for d in order:
            state = BatchState(profiles={f"device:{key}": d})
            await redis_store.save(state)
            memory.save(state)
    kept = [await redis_store.get_profile("device", k) for k in ("d2", "d3")]
    assert kept[0] == kept[1] == memory.get_profile("device", "d2")
    assert memory.get_profile("device", "d2") == memory.get_profile("device", "d3")


async def test_a_reshard_in_progress_is_followed(
    redis_cluster: LocalRedisCluster, stack: Settings
) -> None:
    """While a user's slot moves to another node, loads and saves follow the cluster's
    redirections rather than fail: TRYAGAIN while the user's two keys sit on different
    nodes, ASK once they have moved but the slot has not, MOVED after. The user's state
    read and written meanwhile equals the in-memory store's."""
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.ports[0])
    prefix = f"rs{random.randrange(10**9)}:"
    store = RedisStore(client, prefix, ttl_s=3600, seen_ttl_s=86400)
    memory = MemoryStore()
    events = traffic(300)
    first, second = events[:150], events[150:]
    uid = next(
        ev["user_id"]
        for ev in second
        if ev["event_type"] != "label" and any(e["user_id"] == ev["user_id"] for e in first)
    )
    doc_key, seen_key = user_keys(prefix, uid)
    slot = client.keyslot(doc_key)
    src = client.nodes_manager.get_node_from_slot(slot)
    dst = next(n for n in client.get_primaries() if n.name != src.name)
    src_c, dst_c = client.get_redis_connection(src), client.get_redis_connection(dst)
    src_id, dst_id = (c.execute_command("CLUSTER", "MYID").decode() for c in (src_c, dst_c))

    def move_all() -> None:
        """MIGRATE every key left in the slot, as a reshard does."""
        while keys := src_c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src_c.execute_command("MIGRATE", dst.host, dst.port, "", 0, 5000, "KEYS", *keys)

    moved = threading.Timer(0.5, move_all)
    try:
        state = await store.load(needs_for(first, ident_keys))
        decide_batch(state, first)
        await store.save(state)
        reference = memory.load(needs_for(first, ident_keys))
        decide_batch(reference, first)
        memory.save(reference)

        dst_c.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src_c.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        src_c.execute_command("MIGRATE", dst.host, dst.port, "", 0, 5000, "KEYS", doc_key)
        moved.start()  # the user's seen marks follow half a second later
        state = await store.load(needs_for(second, ident_keys))
        assert not moved.is_alive()  # the load waited out the split (TRYAGAIN)
        assert state.users[uid] == memory.users[uid]
        decide_batch(state, second)
        await store.save(state)  # the slot is still migrating: ASK
        assert src_c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        reference = memory.load(needs_for(second, ident_keys))
        decide_batch(reference, second)
        memory.save(reference)

        for c in (dst_c, src_c):
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        again = await store.load(needs_for(second, ident_keys))  # a stale map: MOVED
        assert client.nodes_manager.get_node_from_slot(slot).name == dst.name
        assert again.users[uid] == memory.users[uid]
        assert again.seen == {ev["event_id"] for ev in second}
        assert orjson.loads(dst_c.get(doc_key)) == memory.users[uid]
        assert dst_c.zcard(seen_key) > 0
    finally:
        moved.cancel()
        moved.join()
        if client.nodes_manager.get_node_from_slot(slot).name != dst.name:
            move_all()
            for c in (dst_c, src_c):
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
            client.delete(key)
        client.close()


async def test_reverted_and_rejected_rules_are_kept_for_every_worker(
    target: Any, prefix: str
) -> None:
    """Rule versions a worker reverted are read back by the next worker, each once; a
    rejected rule message is dead-lettered by the first worker only."""
    store = RedisStore(target, prefix, ttl_s=3600)
    assert await store.reverted_rules() == set()
    for rule_id, version in (("ato_login", 4), ("a:b", 2), ("ato_login", 4), ("ato_login", 5)):
        await store.mark_reverted(rule_id, version)
    again = RedisStore(target, prefix, ttl_s=3600)
    assert await again.reverted_rules() == {("ato_login", 4), ("ato_login", 5), ("a:b", 2)}
    # a rejected rule message is dead-lettered by the first worker that rejects it
    claims = await asyncio.gather(
        *(s.claim_rejection("risk.rules:0:7:ab") for s in (store, again, store, again))
    )
    assert sorted(claims) == [False, False, False, True]  # one worker wins, at once
    await store.release_rejection("risk.rules:0:7:ab")  # its send failed
    assert await again.claim_rejection("risk.rules:0:7:ab") is True
    assert await again.claim_rejection("risk.rules:0:8:ab") is True


async def test_profiles_written_ahead_are_there_at_once_and_not_written_again(
    target: Any, prefix: str
) -> None:
    """The worker writes a batch's profiles before it publishes the outputs: they are in
    Redis at once, before the user's document, and the save of the rest leaves them out
    (a profile removed in between stays removed)."""
    redis_store = RedisStore(target, prefix, ttl_s=3600)
    events = traffic(40)
    state = await redis_store.load(needs_for(events, ident_keys))
    decide_batch(state, events)
    user = next(ev["user_id"] for ev in events if ev["user_id"])
    state.profiles = {
        "device:d1": {"event_time": T0, "score": 0.3, "decision": "pass", "event_id": "e1"},
        f"user:{user}": {"event_time": T0, "score": 0.5, "decision": "review", "event_id": "e2"},
    }
    await redis_store.save_profiles(state)
    assert await redis_store.get_profile("device", "d1") == state.profiles["device:d1"]
    assert target.get(user_keys(prefix, user)[0]) is None  # the rest comes later
    target.delete(profile_key(prefix, "user", user))
    await redis_store.save(state)
    assert target.get(user_keys(prefix, user)[0]) is not None
    assert await redis_store.get_profile("user", user) is None
    assert await redis_store.get_profile("device", "d1") == state.profiles["device:d1"]


async def test_fraud_marks_on_an_identifier_stop_at_the_cap(target: Any, prefix: str) -> None:
    """Fraud marks on one identifier are kept with their label's time up to
    MAX_IDENT_FRAUD users, across batches, as the in-memory store keeps them; a user's
    earliest mark stands; a mark past the cap still renews the TTL; a set of marks
    written by an older release (without times, larger than the cap) loads at most that
    many members, as marked before any event, and is never written."""
    client = target
    store = RedisStore(client, prefix, ttl_s=3600)
    for start in range(0, MAX_IDENT_FRAUD + 50, 25):
        state = BatchState()
        state.fraud_marks = [("ip:1", f"u{k}", T0 + k) for k in range(start, start + 25)]
        await store.save(state)
    key = ident_keys_of(prefix, "ip:1")[5]
    assert client.zcard(key) == MAX_IDENT_FRAUD
    client.expire(key, 100)
    state = BatchState()
    state.fraud_marks = [("ip:1", "late", T0), ("ip:1", "u3", T0 - 5.0), ("ip:1", "u4", T0 + 99)]
    await store.save(state)
    assert client.ttl(key) > 100 and client.zscore(key, "late") is None
    assert client.zscore(key, "u3") == T0 - 5.0 and client.zscore(key, "u4") == T0 + 4
    loaded = await store.load(Needs(users=(), idents=("ip:1",), events=()))
    want = {f"u{k}": T0 + k for k in range(MAX_IDENT_FRAUD)} | {"u3": T0 - 5.0}
    assert loaded.idents["ip:1"].fraud == want
    memory = MemoryStore()  # the same marks in memory: the same state
    for start in range(0, MAX_IDENT_FRAUD + 50, 25):
        state = BatchState()
        state.fraud_marks = [("ip:1", f"u{k}", T0 + k) for k in range(start, start + 25)]
        memory.save(state)
    state = BatchState()
    state.fraud_marks = [("ip:1", "late", T0), ("ip:1", "u3", T0 - 5.0), ("ip:1", "u4", T0 + 99)]
    memory.save(state)
    assert memory.idents["ip:1"].fraud == want
    older = ident_keys_of(prefix, "ip:2")[2]
    client.sadd(older, *[f"u{k}" for k in range(500)])
    client.expire(older, 100)
    loaded = await store.load(Needs(users=(), idents=("ip:2",), events=()))
    fraud = loaded.idents["ip:2"].fraud
    assert len(fraud) == MAX_IDENT_FRAUD and fraud.keys() <= {f"u{k}" for k in range(500)}
    assert set(fraud.values()) == {0.0}
    state = BatchState()
    state.fraud_marks = [("ip:2", "late", T0)]
    await store.save(state)
    assert client.scard(older) == 500 and client.ttl(older) <= 100


async def test_a_confirmed_fraudster_outlives_the_feature_ttl(target: Any, prefix: str) -> None:
    """A user the risk team confirmed as a fraudster keeps the verdict through a quiet
    spell: the user's document and profile get ``detection.verdict_ttl_s``, not the
    feature TTL after which any other user starts afresh; a user with an account action
    in force keeps the document until the action can have run out."""
    settings = Settings.load(env={}, config_file=None)
    core = Core.create(settings, deterministic=True)
    store = RedisStore(target, prefix, ttl_s=3600, verdict_ttl_s=400 * 86400, action_ttl_s=7200)

    def at(seconds: float) -> str:
        return format_ts(T0 + seconds)

    events: list[dict[str, Any]] = [
        {
            "event_id": f"login-{u}",
            "event_type": "device",
            "ts": at(0),
            "user_id": u,
            "device_id": f"d-{u}",
            "kind": "login",
        }
        for u in ("u-fraud", "u-plain")
    ]
    events.append(
        {
            "event_id": "verdict",
            "event_type": "label",
            "ts": at(60),
            "user_id": "u-fraud",
            "target_type": "user",
            "target_id": "u-fraud",
            "label": "fraud",
            "source": "manual",
        }
    )
    state = await store.load(core.needs(events))
    core.process(events, state, now=T0 + 60)
    await store.save(state)
    fraud_doc, _ = user_keys(prefix, "u-fraud")
    plain_doc, _ = user_keys(prefix, "u-plain")
    assert 399 * 86400 < target.ttl(fraud_doc) <= 400 * 86400
    assert 0 < target.ttl(plain_doc) <= 3600
    assert 399 * 86400 < target.ttl(profile_key(prefix, "user", "u-fraud")) <= 400 * 86400
    assert 0 < target.ttl(profile_key(prefix, "user", "u-plain")) <= 3600
    profile = await store.get_profile("user", "u-fraud")
    assert profile is not None and profile["confirmed_fraud"] is True
    # an action in force: the document is kept for the action's time at least
    frozen = await store.load(Needs(users=("u-plain",), idents=(), events=()))
    user = frozen.user_for("u-plain", T0 + 120)
    assert user is not None
    user["actions"] = {"freeze": T0 + 7000}
    await store.save(frozen)
    assert 3600 < target.ttl(plain_doc) <= 7200


async def test_a_blob_kept_aside_stays_the_first_and_expires(target: Any, prefix: str) -> None:
    """``keep_blob`` writes only where nothing is yet, with a TTL: the first unreadable
    checkpoint kept is not replaced by a later one."""
    store = RedisStore(target, prefix, ttl_s=3600)
    assert await store.keep_blob("models:unreadable", b"first", 600) is True
    assert await store.keep_blob("models:unreadable", b"second", 600) is False
    assert await store.get_blob("models:unreadable") == b"first"
    assert 0 < target.ttl(f"{prefix}models:unreadable") <= 600


async def test_device_alerts_before_login_are_deduplicated_through_redis(
    target: Any, prefix: str
) -> None:
    """Alerts without a user are deduplicated per device on the device's identifier state:
    through Redis, one event a batch, the alerts sent are those of the in-memory store."""
    rule = {
        "rule_id": "emulator",
        "version": 1,
        "applies_to": ["device"],
        "when": "event.is_emulator == true",
        "score": 0.7,
        "severity": "high",
        "action": "review",
        "mode": "active",
        "reason": "An emulator.",
        "enabled": True,
    }
    events = [
        {
            "event_id": f"d{i}",
            "event_type": "device",
            "user_id": "",
            "ts": format_ts(T0 + minute * 60.0),
            "device_id": device,
            "kind": "install",
            "is_emulator": True,
        }
        for i, (device, minute) in enumerate(
            [("farm", 0), ("farm", 20), ("other", 25), ("farm", 50), ("farm", 140)]
        )
    ]
    sent: dict[str, list[str]] = {}
    for name in ("redis", "memory"):
        core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
        core.apply_rule(rule)
        memory = MemoryStore()
        redis_store = RedisStore(target, prefix + name, ttl_s=3600)
        sent[name] = []
        for event in events:
            if name == "memory":
                out = core.run_batch(memory, [event], now=T0)
            else:
                state = await redis_store.load(core.needs([event]))
                out = core.process([event], state, now=T0)
                await redis_store.save(state)
            sent[name] += [a["source_event_id"] for a in out.alerts]
    assert sent["redis"] == sent["memory"] == ["d0", "d2", "d4"]

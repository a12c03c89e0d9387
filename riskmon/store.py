"""The feature store: one interface, two implementations.

* :class:`MemoryStore` — in-process, for the replay and for tests.
* :class:`RedisStore` — shared by every worker; one pipelined round trip to load what a
  micro-batch needs and one to write back what it changed, never one per event; every
  key carries a TTL so memory stays bounded.

Both load a :class:`BatchState` (the users, identifiers and seen event ids a batch
touches), let the core change it, and save it back with the same semantics, so the same
events give the same features on both (a test checks it).

Redis key layout (``P`` is ``settings.redis.key_prefix``, ``rm:`` by default):

==================================  ======  ==============================================
key                                 type    what
==================================  ======  ==============================================
``P u:{user_id}``                   string  the user's state document (JSON)
``P i:{kind}:{value}:u``            zset    users seen on an identifier, score = last ts
``P i:{kind}:{value}:e``            zset    events on an identifier, score = event ts
``P i:{kind}:{value}:f``            set     users on it with a confirmed fraud label
``P i:{kind}:{value}:a``            hash    identifier attributes (device flags)
``P i:{kind}:{value}:app``          zset    loan applications carrying the identifier,
                                            member ``<amount>|<application_id>``,
                                            score = event ts
``P seen:{event_id}``               string  the event was processed (idempotency)
``P profile:user:{user_id}``        string  current risk profile of a user (JSON)
``P profile:application:{app_id}``  string  current risk profile of an application (JSON)
``P profile:device:{device_id}``    string  current risk profile of a device (JSON)
``P models``                        string  model checkpoint (pickle, versioned)
==================================  ======  ==============================================

``kind`` is one of device, ip, wifi, sim, account, phone, idnum. Profiles are what the
approval service reads (see :func:`profile_key`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from riskmon.state import (
    MAX_IDENT_APPS,
    MAX_IDENT_EVENTS,
    MAX_IDENT_USERS,
    WEEK,
    IdentState,
)


def profile_key(prefix: str, entity: str, entity_id: str) -> str:
    """Where the approval service finds an entity's current risk.

    >>> profile_key("rm:", "user", "u1001")
    'rm:profile:user:u1001'
    """
    return f"{prefix}profile:{entity}:{entity_id}"


@dataclass
class BatchState:
    """Everything one micro-batch reads and writes."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    idents: dict[str, IdentState] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    # writes beyond the entities above
    new_seen: dict[str, float] = field(default_factory=dict)
    fraud_marks: list[tuple[str, str]] = field(default_factory=list)  # (ident key, user)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # "entity:id" -> doc
    dirty_users: set[str] = field(default_factory=set)
    now: float = 0.0  # newest event time of the batch (for trims)


@dataclass(frozen=True)
class Needs:
    """The keys a batch needs: computed from the events before anything is loaded."""

    users: tuple[str, ...]
    idents: tuple[str, ...]
    events: tuple[str, ...]


class MemoryStore:
    """In-process store with Redis's semantics (trims, sorted-set order), no TTL clock.

    It hands out its live objects rather than copies: a batch's changes are its state
    at once, and :meth:`save` only trims, as Redis does on write.
    """

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.idents: dict[str, IdentState] = {}
        self.seen: dict[str, float] = {}
        self.profiles: dict[str, dict[str, Any]] = {}

    def load(self, needs: Needs) -> BatchState:
        state = BatchState()
        users, idents, seen = self.users, self.idents, self.seen
        for uid in needs.users:
            doc = users.get(uid)
            if doc is not None:
                state.users[uid] = doc
        for key in needs.idents:
            ident = idents.get(key)
            if ident is not None:
                state.idents[key] = ident
        state.seen = {e for e in needs.events if e in seen}
        return state

    def save(self, state: BatchState) -> None:
        now = state.now
        for uid in state.dirty_users:
            self.users[uid] = state.users[uid]
        idents = self.idents
        for key, ident in state.idents.items():
            if ident.settle(now):
                idents[key] = ident
        for key, uid in state.fraud_marks:
            target = idents.get(key)
            if target is None:
                target = idents[key] = IdentState()
            target.fraud.add(uid)
        self.seen.update(state.new_seen)
        self.profiles.update(state.profiles)

    def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        return self.profiles.get(f"{entity}:{entity_id}")


class RedisStore:
    """The shared store on Redis (``redis.asyncio``)."""

    def __init__(self, client: Any, prefix: str, ttl_s: int, seen_ttl_s: int | None = None):
        self.r = client
        self.p = prefix
        self.ttl = int(ttl_s)
        self.seen_ttl = int(seen_ttl_s or ttl_s)

    @classmethod
    def from_settings(cls, settings: Any) -> RedisStore:
        import redis.asyncio as aioredis

        client = aioredis.Redis(
            host=settings.redis.host,
            port=settings.redis.port,
            db=settings.redis.db,
            decode_responses=False,
            socket_timeout=10,
        )
        return cls(client, settings.redis.key_prefix, settings.detection.feature_ttl_s)

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def load(self, needs: Needs) -> BatchState:
        p = self.p
        pipe = self.r.pipeline(transaction=False)
        for uid in needs.users:
            pipe.get(f"{p}u:{uid}")
        for key in needs.idents:
            base = f"{p}i:{key}"
            pipe.zrange(f"{base}:u", 0, -1, withscores=True)
            pipe.zrange(f"{base}:e", 0, -1, withscores=True)
            pipe.smembers(f"{base}:f")
            pipe.hgetall(f"{base}:a")
            pipe.zrange(f"{base}:app", 0, -1, withscores=True)
        for eid in needs.events:
            pipe.exists(f"{p}seen:{eid}")
        res = await pipe.execute()
        state = BatchState()
        i = 0
        for uid in needs.users:
            if res[i] is not None:
                state.users[uid] = orjson.loads(res[i])
            i += 1
        for key in needs.idents:
            users, events, fraud, attrs, apps = res[i : i + 5]
            i += 5
            if users or events or fraud or attrs or apps:
                state.idents[key] = IdentState(
                    users={m.decode(): float(s) for m, s in users},
                    events={m.decode(): float(s) for m, s in events},
                    fraud={m.decode() for m in fraud},
                    attrs={k.decode(): v.decode() for k, v in attrs.items()},
                    apps={m.decode(): float(s) for m, s in apps},
                )
        for eid in needs.events:
            if res[i]:
                state.seen.add(eid)
            i += 1
        return state

    async def save(self, state: BatchState) -> None:
        p, ttl = self.p, self.ttl
        pipe = self.r.pipeline(transaction=False)
        for uid in state.dirty_users:
            pipe.set(f"{p}u:{uid}", orjson.dumps(state.users[uid]), ex=ttl)
        min_score = state.now - WEEK
        for key, ident in state.idents.items():
            if not ident.dirty:
                continue
            base = f"{p}i:{key}"
            if ident.new_users:
                pipe.zadd(f"{base}:u", ident.new_users, gt=True)
                pipe.zremrangebyscore(f"{base}:u", "-inf", f"({min_score}")
                pipe.zremrangebyrank(f"{base}:u", 0, -(MAX_IDENT_USERS + 1))
                pipe.expire(f"{base}:u", ttl)
            if ident.new_events:
                pipe.zadd(f"{base}:e", ident.new_events)
                pipe.zremrangebyscore(f"{base}:e", "-inf", f"({min_score}")
                pipe.zremrangebyrank(f"{base}:e", 0, -(MAX_IDENT_EVENTS + 1))
                pipe.expire(f"{base}:e", ttl)
            if ident.new_fraud:
                pipe.sadd(f"{base}:f", *sorted(ident.new_fraud))
                pipe.expire(f"{base}:f", ttl)
            if ident.new_attrs:
                pipe.hset(f"{base}:a", mapping=ident.new_attrs)
                pipe.expire(f"{base}:a", ttl)
            if ident.new_apps:
                pipe.zadd(f"{base}:app", ident.new_apps)
                pipe.zremrangebyscore(f"{base}:app", "-inf", f"({min_score}")
                pipe.zremrangebyrank(f"{base}:app", 0, -(MAX_IDENT_APPS + 1))
                pipe.expire(f"{base}:app", ttl)
            ident.clear_changes()
        for key, uid in state.fraud_marks:
            pipe.sadd(f"{p}i:{key}:f", uid)
            pipe.expire(f"{p}i:{key}:f", ttl)
        for eid in state.new_seen:
            pipe.set(f"{p}seen:{eid}", b"1", ex=self.seen_ttl)
        for name, doc in state.profiles.items():
            entity, _, entity_id = name.partition(":")
            pipe.set(profile_key(p, entity, entity_id), orjson.dumps(doc), ex=ttl)
        await pipe.execute()

    async def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        raw = await self.r.get(profile_key(self.p, entity, entity_id))
        return None if raw is None else orjson.loads(raw)

    async def get_blob(self, name: str) -> bytes | None:
        data = await self.r.get(f"{self.p}{name}")
        return None if data is None else bytes(data)

    async def put_blob(self, name: str, data: bytes) -> None:
        await self.r.set(f"{self.p}{name}", data)


def needs_for(events: Iterable[dict[str, Any]], ident_keys: Any) -> Needs:
    """The keys a batch of events needs, in first-seen order (deterministic)."""
    users: dict[str, None] = {}
    idents: dict[str, None] = {}
    eids: dict[str, None] = {}
    for ev in events:
        uid = ev.get("user_id")
        if uid:
            users[uid] = None
        eids[ev["event_id"]] = None
        if ev["event_type"] != "label":
            for key in ident_keys(ev):
                idents[key] = None
    return Needs(tuple(users), tuple(idents), tuple(eids))


class AsyncMemoryStore:
    """A :class:`MemoryStore` behind the asynchronous interface of :class:`RedisStore`:
    for unit tests of the stream shell and for a single process without Redis."""

    def __init__(self) -> None:
        self.memory = MemoryStore()
        self.blobs: dict[str, bytes] = {}

    async def load(self, needs: Needs) -> BatchState:
        return self.memory.load(needs)

    async def save(self, state: BatchState) -> None:
        self.memory.save(state)

    async def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        return self.memory.get_profile(entity, entity_id)

    async def get_blob(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    async def put_blob(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

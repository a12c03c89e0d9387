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
``P i:{<kind>:<value>}:u``          zset    users seen on an identifier, score = last ts
``P i:{<kind>:<value>}:e``          zset    events on an identifier, score = event ts
``P i:{<kind>:<value>}:f``          set     users on it with a confirmed fraud label
``P i:{<kind>:<value>}:a``          hash    identifier attributes (device flags)
``P i:{<kind>:<value>}:app``        zset    loan applications carrying the identifier,
                                            member ``<amount>|<application_id>``,
                                            score = event ts
``P seen:{event_id}``               string  the event was processed (idempotency)
``P profile:user:{user_id}``        string  current risk profile of a user (JSON)
``P profile:application:{app_id}``  string  current risk profile of an application (JSON)
``P profile:device:{device_id}``    string  current risk profile of a device (JSON)
``P models``                        string  model checkpoint (pickle, versioned)
==================================  ======  ==============================================

``kind`` is one of device, ip, wifi, sim, account, phone, idnum. The braces around
``<kind>:<value>`` are literal: a Redis Cluster hash tag, so the five keys of one
identifier share a slot and one server-side script reads them, or writes them, in one
command. Profiles are what the approval service reads (see :func:`profile_key`).

Commands per micro-batch: one per user document (read, write), one per event id (seen,
mark), one per identifier to read its five keys and one per changed identifier to write
them (:data:`LOAD_IDENT` and :data:`SAVE_IDENT`, Lua), one per profile; one pipelined
round trip to load, and one MULTI/EXEC to save (all of a batch's writes or none).
"""

from __future__ import annotations

import asyncio
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
    new_user_state,
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

    def user_for(self, user_id: str, ts: float) -> dict[str, Any] | None:
        """The user's document (created at ``ts`` when new), marked to be written back;
        ``None`` for events without a user."""
        if not user_id:
            return None
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = new_user_state(ts)
        self.dirty_users.add(user_id)
        return user


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


#: Reads the five keys of one identifier (KEYS: u, e, f, a, app).
LOAD_IDENT = """
return {
  redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
  redis.call('SMEMBERS', KEYS[3]),
  redis.call('HGETALL', KEYS[4]),
  redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES'),
}
"""

#: Writes what a batch changed on one identifier (KEYS: u, e, f, a, app) by commutative
#: steps, trims as :meth:`riskmon.state.IdentState.trim` does, and renews every TTL.
#: ARGV: ttl, lowest score kept, a JSON object ``{"u": [score, member, ...], "e": [...],
#: "app": [...], "f": [member, ...], "a": [field, value, ...]}`` (scores as decimal
#: strings, so they arrive exactly), then the caps of ``u``, ``e`` and ``app``.
SAVE_IDENT = """
local ttl, lowest = ARGV[1], '(' .. ARGV[2]
local change = cjson.decode(ARGV[3])
local caps = {u = tonumber(ARGV[4]), e = tonumber(ARGV[5]), app = tonumber(ARGV[6])}
local function zset(key, pairs, cap, gt)
  if pairs == nil or #pairs == 0 then return end
  for i = 1, #pairs, 2000 do  -- unpack() takes a few thousand values at most
    local last = math.min(i + 1999, #pairs)
    if gt then
      redis.call('ZADD', key, 'GT', unpack(pairs, i, last))
    else
      redis.call('ZADD', key, unpack(pairs, i, last))
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', lowest)
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('EXPIRE', key, ttl)
end
zset(KEYS[1], change.u, caps.u, true)
zset(KEYS[2], change.e, caps.e, false)
zset(KEYS[5], change.app, caps.app, false)
if change.f ~= nil and #change.f > 0 then
  for i = 1, #change.f, 2000 do
    redis.call('SADD', KEYS[3], unpack(change.f, i, math.min(i + 1999, #change.f)))
  end
  redis.call('EXPIRE', KEYS[3], ttl)
end
if change.a ~= nil and #change.a > 0 then
  redis.call('HSET', KEYS[4], unpack(change.a))
  redis.call('EXPIRE', KEYS[4], ttl)
end
return 1
"""
_CAPS = (MAX_IDENT_USERS, MAX_IDENT_EVENTS, MAX_IDENT_APPS)


def ident_keys_of(prefix: str, key: str) -> list[str]:
    """The five Redis keys of identifier ``key`` (``kind:value``), in script order.

    >>> ident_keys_of("rm:", "device:d1")
    ['rm:i:{device:d1}:u', 'rm:i:{device:d1}:e', 'rm:i:{device:d1}:f', \
'rm:i:{device:d1}:a', 'rm:i:{device:d1}:app']
    """
    base = f"{prefix}i:{{{key}}}"
    return [f"{base}:u", f"{base}:e", f"{base}:f", f"{base}:a", f"{base}:app"]


def _scores(flat: list[bytes]) -> dict[str, float]:
    """``ZRANGE .. WITHSCORES`` (member, score, member, score, ...) as a map."""
    return dict(zip(map(bytes.decode, flat[::2]), map(float, flat[1::2]), strict=True))


def _pairs(zset: dict[str, float]) -> list[str]:
    """A map of member -> score as the flat score, member list of SAVE_IDENT."""
    out: list[str] = []
    for member, score in zset.items():
        out.append(repr(score))
        out.append(member)
    return out


class RedisStore:
    """The shared store on Redis, with an asynchronous interface for the worker.

    ``client`` is a synchronous ``redis.Redis`` (with hiredis): each micro-batch's round
    trip runs in a thread beside the event loop. Its commands are packed and parsed in C,
    about half the cost per command of ``redis.asyncio``, which packs in Python and times
    every reply. A stuck connection fails the batch after the client's socket timeout, and
    the worker retries it.
    """

    def __init__(self, client: Any, prefix: str, ttl_s: int, seen_ttl_s: int | None = None):
        self.r = client
        self.p = prefix
        self.ttl = int(ttl_s)
        self.seen_ttl = int(seen_ttl_s or ttl_s)
        self._load_ident = client.register_script(LOAD_IDENT)
        self._save_ident = client.register_script(SAVE_IDENT)

    @classmethod
    def from_settings(cls, settings: Any) -> RedisStore:
        import redis

        client = redis.Redis(
            host=settings.redis.host,
            port=settings.redis.port,
            db=settings.redis.db,
            decode_responses=False,
            socket_timeout=10,
            socket_connect_timeout=10,
        )
        return cls(client, settings.redis.key_prefix, settings.detection.feature_ttl_s)

    async def close(self) -> None:
        await asyncio.to_thread(self.r.close)

    async def ping(self) -> bool:
        return bool(await asyncio.to_thread(self.r.ping))

    async def load(self, needs: Needs) -> BatchState:
        """The state a batch needs, in one pipelined round trip."""
        return await asyncio.to_thread(self.load_now, needs)

    async def save(self, state: BatchState) -> None:
        """What a batch changed, in one pipelined round trip."""
        await asyncio.to_thread(self.save_now, state)

    def load_now(self, needs: Needs) -> BatchState:
        p = self.p
        pipe = self.r.pipeline(transaction=False)
        for uid in needs.users:
            pipe.get(f"{p}u:{uid}")
        load_ident = self._load_ident
        for key in needs.idents:
            load_ident(keys=ident_keys_of(p, key), client=pipe)
        for eid in needs.events:
            pipe.exists(f"{p}seen:{eid}")
        res = pipe.execute()
        state = BatchState()
        i = 0
        for uid in needs.users:
            if res[i] is not None:
                state.users[uid] = orjson.loads(res[i])
            i += 1
        for key in needs.idents:
            users, events, fraud, attrs, apps = res[i]
            i += 1
            if users or events or fraud or attrs or apps:
                state.idents[key] = IdentState(
                    users=_scores(users),
                    events=_scores(events),
                    fraud={m.decode() for m in fraud},
                    attrs=dict(
                        zip(
                            map(bytes.decode, attrs[::2]),
                            map(bytes.decode, attrs[1::2]),
                            strict=True,
                        )
                    ),
                    apps=_scores(apps),
                )
        for eid in needs.events:
            if res[i]:
                state.seen.add(eid)
            i += 1
        return state

    def save_now(self, state: BatchState) -> None:
        """Write the batch's changes in one MULTI/EXEC: a failure leaves none of them, so
        the retried batch meets the state from before it."""
        p, ttl = self.p, self.ttl
        pipe = self.r.pipeline(transaction=True)  # all or nothing: a retry starts clean
        for uid in state.dirty_users:
            pipe.set(f"{p}u:{uid}", orjson.dumps(state.users[uid]), ex=ttl)
        lowest = repr(state.now - WEEK)
        marks: dict[str, list[str]] = {}
        for key, uid in state.fraud_marks:
            marks.setdefault(key, []).append(uid)
        save_ident = self._save_ident
        for key, ident in state.idents.items():
            fraud = ident.new_fraud.union(marks.pop(key, ()))
            if not (ident.dirty or fraud):
                continue
            change: dict[str, list[str]] = {}
            if ident.new_users:
                change["u"] = _pairs(ident.new_users)
            if ident.new_events:
                change["e"] = _pairs(ident.new_events)
            if ident.new_apps:
                change["app"] = _pairs(ident.new_apps)
            if fraud:
                change["f"] = sorted(fraud)
            if ident.new_attrs:
                change["a"] = [x for kv in ident.new_attrs.items() for x in kv]
            save_ident(
                keys=ident_keys_of(p, key),
                args=[ttl, lowest, orjson.dumps(change), *_CAPS],
                client=pipe,
            )
            ident.clear_changes()
        for key, uids in marks.items():  # identifiers this batch did not load
            save_ident(
                keys=ident_keys_of(p, key),
                args=[ttl, lowest, orjson.dumps({"f": sorted(set(uids))}), *_CAPS],
                client=pipe,
            )
        for eid in state.new_seen:
            pipe.set(f"{p}seen:{eid}", b"1", ex=self.seen_ttl)
        for name, doc in state.profiles.items():
            entity, _, entity_id = name.partition(":")
            pipe.set(profile_key(p, entity, entity_id), orjson.dumps(doc), ex=ttl)
        pipe.execute()

    async def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        raw = await asyncio.to_thread(self.r.get, profile_key(self.p, entity, entity_id))
        return None if raw is None else orjson.loads(raw)

    async def get_blob(self, name: str) -> bytes | None:
        data = await asyncio.to_thread(self.r.get, f"{self.p}{name}")
        return None if data is None else bytes(data)

    async def put_blob(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self.r.set, f"{self.p}{name}", data)


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

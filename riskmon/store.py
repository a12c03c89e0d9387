"""The feature store: one interface, two implementations.

* :class:`MemoryStore` — in-process, for the replay and for tests.
* :class:`RedisStore` — shared by every worker; one pipelined round trip to load what a
  micro-batch needs and one to write back what it changed, never one per event; every
  key of the state carries a TTL so memory stays bounded (the one key of the model
  checkpoint is overwritten in place).

Both load a :class:`BatchState` (the users, identifiers and seen event ids a batch
touches), let the core change it, and save it back with the same semantics, so the same
events give the same features on both (a test checks it).

Redis key layout (``P`` is ``settings.redis.key_prefix``, ``rm:`` by default):

==================================  ======  ==============================================
key                                 type    what
==================================  ======  ==============================================
``P u:{u:<user_id>}``               string  the user's state document (JSON)
``P u:{u:<user_id>}:seen``          zset    the user's processed events (idempotency),
                                            member event id, score = when it was
                                            saved (wall clock): kept for the seen TTL
                                            from then, whatever the event times
``P i:{<kind>:<value>}:u``          zset    users seen on an identifier, score = last ts
``P i:{<kind>:<value>}:e``          zset    events on an identifier, score = event ts
``P i:{<kind>:<value>}:fz``         zset    users on it with a confirmed fraud label,
                                            score = the label's event time (the
                                            earliest; the first 200 users: with that
                                            many, the fraud share is 1)
``P i:{<kind>:<value>}:f``          set     the same, written by releases before the
                                            label's time was kept: read as marked
                                            before any event, never written
``P i:{<kind>:<value>}:a``          hash    identifier attributes (device flags), and
                                            ``@<name>``: event time of each
``P i:{<kind>:<value>}:app``        zset    loan applications carrying the identifier,
                                            member ``<amount>|<application_id>``,
                                            score = event ts
``P seen:<event_id>``               string  an event without a user was processed
``P profile:user:<user_id>``        string  current risk profile of a user (JSON)
``P profile:application:<app_id>``  string  current risk profile of an application (JSON)
``P profile:device:<device_id>``    string  current risk profile of a device (JSON)
``P models``                        string  model checkpoint (versioned header, zlib of a pickle:
                                            9 MB with 80,000 vectors waiting for labels)
``P rules:reverted``                set     rule versions reverted after they failed
                                            on an event, ``<version>:<rule_id>`` (no TTL)
``P rules:rejected``                set     rule messages rejected and dead-lettered,
                                            ``<topic>:<partition>:<offset>:<sha1>``
                                            (no TTL)
``P state:mark``                    string  set once by the first worker on this Redis,
                                            ``<time set> <random hex>`` (no TTL): gone or
                                            changed means Redis lost the state
                                            (``streams.shell``, log ``redis_state_lost``)
==================================  ======  ==============================================

``kind`` is one of device, ip, wifi, sim, account, phone, idnum. The braces around
``<kind>:<value>`` and ``u:<user_id>`` are literal: Redis Cluster hash tags, so the keys of
one identifier, and the two keys of one user, share a slot, and one server-side script
reads them, or writes them, in one command. Profiles are what the approval service reads
(see :func:`profile_key`): each holds the decision on the newest event of its user,
application or device, in event time, and begins with that event's ``event_time`` (epoch
seconds).

Commands per micro-batch: one per user to read its document and which of the batch's
events it has seen, and one to write both (:data:`LOAD_USER`, :data:`SAVE_USER`); one
per identifier to read its five keys and one per changed identifier to write them
(:data:`LOAD_IDENT`, :data:`SAVE_IDENT`); one per event without a user (seen, mark); one
per profile (:data:`SAVE_PROFILE`). One pipelined round trip loads. The worker writes
the profiles in a round trip of their own before it publishes the batch's outputs
(:meth:`RedisStore.save_profiles`), so that whoever reads a profile on an alert or an
adjustment finds it already there, and saves the rest after; these writes are
idempotent, like those of step 1 below.

Saving is safe to retry after a failure at any point. On one server the save is one
MULTI/EXEC: all of a batch's writes or none, so the retried batch meets the state from
before it. A Redis Cluster cannot run one transaction across slots, so there the save
takes two ordered round trips:

1. identifiers, fraud marks and profiles. These writes are commutative and idempotent
   (event ids are members, user scores only rise, sets only grow, a profile keeps the
   document of its newest event: :data:`SAVE_PROFILE`), so writing them twice is writing
   them once, and two workers' writes give the same result in either order;
2. then each user's document together with the seen marks of that user's events, in one
   script (atomic), and the seen marks of events without a user.

A user whose step 2 did not happen keeps its old document and its events stay unseen:
the retry decides them again from that document. A user whose step 2 happened has its
events seen: the retry skips them, and their outputs were already published (the worker
publishes before it saves). What the retry can see that the first attempt did not is
the batch's own later events on shared identifiers, from step 1: it may count them in
its windows, as it would count another worker's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any

import orjson
import redis
from hiredis import pack_command
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from riskmon.logs import get_logger
from riskmon.state import (
    MAX_IDENT_APPS,
    MAX_IDENT_EVENTS,
    MAX_IDENT_FRAUD,
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
    new_seen: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (user, ts)
    # (ident key, user, the label's event time)
    fraud_marks: list[tuple[str, str, float]] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # "entity:id" -> doc
    dirty_users: set[str] = field(default_factory=set)
    now: float = 0.0  # newest event time of the batch (for trims)
    profiles_saved: bool = False  # written ahead of the rest (``save_profiles``)

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
    events: tuple[tuple[str, str], ...]  # (event id, user id or "")


def _newer(doc: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether ``doc`` replaces ``old`` as a profile (as :data:`SAVE_PROFILE` decides)."""
    if doc["event_time"] != old["event_time"]:
        return bool(doc["event_time"] > old["event_time"])
    digest = hashlib.sha1(orjson.dumps(doc)).hexdigest()
    return digest > hashlib.sha1(orjson.dumps(old)).hexdigest()


class MemoryStore:
    """In-process store with Redis's semantics (trims, sorted-set order), no TTL clock.

    It hands out its live objects rather than copies: a batch's changes are its state
    at once, and :meth:`save` only trims, as Redis does on write. Seen marks last
    ``seen_ttl_s`` from their save, as in Redis: a user's are trimmed as
    :data:`SAVE_USER` trims them when the user gets new ones (those saved more than the
    TTL ago go, and past :data:`MAX_USER_SEEN` the oldest), those of events without a
    user at every save. Their clock is ``clock`` or, by default, the newest batch time
    saved: a replay's own time, as the worker's is the wall clock (``seen_ttl_s`` is
    the :class:`RedisStore`'s, which :meth:`from_settings` takes from the settings; by
    default only the cap trims).
    """

    def __init__(
        self, seen_ttl_s: float = math.inf, clock: Callable[[], float] | None = None
    ) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.idents: dict[str, IdentState] = {}
        self.seen: dict[str, tuple[str, float]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.seen_ttl = seen_ttl_s
        self.clock = clock
        self._now = -math.inf  # the newest batch time saved (the default clock)
        # per user ("" for events without one): (save time, event id) of its seen marks,
        # a heap (the order in which Redis's sorted set ranks them, lowest first)
        self._user_seen: dict[str, list[tuple[float, str]]] = {}
        self._saved_at: dict[str, float] = {}  # event id -> when its mark was saved

    @classmethod
    def from_settings(cls, settings: Any) -> MemoryStore:
        """The seen marks' TTL of :meth:`RedisStore.from_settings` (the feature TTL)."""
        return cls(seen_ttl_s=settings.detection.feature_ttl_s)

    def load(self, needs: Needs) -> BatchState:
        users, idents, seen = self.users, self.idents, self.seen
        return BatchState(
            users={uid: doc for uid in needs.users if (doc := users.get(uid)) is not None},
            idents={key: i for key in needs.idents if (i := idents.get(key)) is not None},
            seen={e for e, _ in needs.events if e in seen},
        )

    def save(self, state: BatchState) -> None:
        now = state.now
        for uid in state.dirty_users:
            self.users[uid] = state.users[uid]
        idents = self.idents
        for key, ident in state.idents.items():
            if ident.settle(now):
                idents[key] = ident
        for key, uid, ts in state.fraud_marks:
            target = idents.get(key)
            if target is None:
                target = idents[key] = IdentState()
            target.add_fraud(uid, ts)
        if now > self._now:
            self._now = now
        self._mark_seen(state.new_seen)
        if not state.profiles_saved:
            self._put_profiles(state)

    def _mark_seen(self, new_seen: dict[str, tuple[str, float]]) -> None:
        """Mark events seen at the store's clock, then trim the marks of each user given
        some as :data:`SAVE_USER` does, and those of events without a user."""
        seen, by_user, saved_at = self.seen, self._user_seen, self._saved_at
        now = self._now if self.clock is None else self.clock()
        seen.update(new_seen)
        touched = {""}  # marks of events without a user expire whoever saves
        for eid, (uid, _ts) in new_seen.items():
            heappush(by_user.setdefault(uid, []), (now, eid))
            saved_at[eid] = now
            touched.add(uid)
        lowest = now - self.seen_ttl
        for uid in touched:
            heap = by_user.get(uid)
            cap = MAX_USER_SEEN if uid else math.inf
            while heap and (heap[0][0] < lowest or len(heap) > cap):
                at, eid = heappop(heap)
                if saved_at.get(eid) == at and seen.get(eid, ("",))[0] == uid:
                    del seen[eid], saved_at[eid]

    def save_profiles(self, state: BatchState) -> None:
        """Write the batch's profiles ahead of the rest of its state, which then leaves
        them out."""
        self._put_profiles(state)
        state.profiles_saved = True

    def _put_profiles(self, state: BatchState) -> None:
        profiles = self.profiles
        for key, doc in state.profiles.items():
            old = profiles.get(key)
            if old is None or _newer(doc, old):  # the newer event's document wins
                profiles[key] = doc

    def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        return self.profiles.get(f"{entity}:{entity_id}")


#: Reads a user's document and the seen mark (score or nil) of each event id in ARGV
#: (KEYS: document, seen marks).
log = get_logger("riskmon.store")

LOAD_USER = """
local seen = {}
for i = 1, #ARGV, 1000 do  -- unpack() takes a few thousand values at most
  local part = redis.call('ZMSCORE', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  for _, score in ipairs(part) do seen[#seen + 1] = score end
end
return {redis.call('GET', KEYS[1]) or false, seen}
"""

#: Writes a user's document and marks the batch's events of that user seen, at once
#: (KEYS: document, seen marks). ARGV: document TTL, document, seen TTL, lowest save
#: time kept, most marks kept, then score (the save's time), event id pairs.
SAVE_USER = """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
if #ARGV > 5 then
  for i = 6, #ARGV, 2000 do
    redis.call('ZADD', KEYS[2], unpack(ARGV, i, math.min(i + 1999, #ARGV)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[5]) + 1))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""

#: Reads the six keys of one identifier (KEYS: u, e, f, a, app, fz), at most ARGV[1] users
#: with a fraud mark (all of them when there are no more; any that many of a set written
#: before the cap, which is all a fraud share can count).
LOAD_IDENT = """
return {
  redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
  redis.call('SRANDMEMBER', KEYS[3], ARGV[1]),
  redis.call('HGETALL', KEYS[4]),
  redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[6], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES'),
}
"""

#: Writes what a batch changed on one identifier (KEYS: u, e, f, a, app, fz) by commutative
#: steps, trims as :meth:`riskmon.state.IdentState.trim` does, and renews the TTL of
#: each key it writes or trims.
#: ARGV: ttl, lowest score kept, a JSON object ``{"u": [score, member, ...], "e": [...],
#: "app": [...], "f": [member, ...], "a": [field, value, ...]}`` (scores as decimal
#: strings, so they arrive exactly), the caps of ``u``, ``e``, ``app`` and ``f`` (fraud
#: marks past it are not added, a set larger from before the cap is cut to it; the TTL is
#: renewed all the same), then which of the first three to trim
#: (:meth:`riskmon.state.IdentState.trims`, e.g. ``"100"``): those that
#: :meth:`riskmon.state.IdentState.settle` would cut after the batch changed the
#: identifier (fraud marks alone trim nothing). Each trim and TTL renewal is a call, and
#: calls are most of a script's cost, so the script makes only those that do something.
SAVE_IDENT = """
local ttl, lowest = ARGV[1], '(' .. ARGV[2]
local change = cjson.decode(ARGV[3])
local caps = {u = tonumber(ARGV[4]), e = tonumber(ARGV[5]), app = tonumber(ARGV[6]),
              f = tonumber(ARGV[7])}
local trims = ARGV[8]
local function zset(key, pairs, cap, gt, trim)
  local added = pairs ~= nil and #pairs > 0
  if added then
    for i = 1, #pairs, 2000 do  -- unpack() takes a few thousand values at most
      local last = math.min(i + 1999, #pairs)
      if gt then
        redis.call('ZADD', key, 'GT', unpack(pairs, i, last))
      else
        redis.call('ZADD', key, unpack(pairs, i, last))
      end
    end
  end
  if trim then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', lowest)
    redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  end
  if added or trim then
    redis.call('EXPIRE', key, ttl)
  end
end
zset(KEYS[1], change.u, caps.u, true, trims:sub(1, 1) == '1')
zset(KEYS[2], change.e, caps.e, false, trims:sub(2, 2) == '1')
zset(KEYS[5], change.app, caps.app, false, trims:sub(3, 3) == '1')
if change.f ~= nil and #change.f > 0 then
  -- score, member: a user's earliest mark stands (LT); no new user past the cap
  local room = caps.f - redis.call('ZCARD', KEYS[6])
  for i = 1, #change.f, 2 do
    local score, member = change.f[i], change.f[i + 1]
    if room > 0 or redis.call('ZSCORE', KEYS[6], member) then
      room = room - redis.call('ZADD', KEYS[6], 'LT', score, member)
    end
  end
  redis.call('EXPIRE', KEYS[6], ttl)
end
if change.a ~= nil and #change.a > 0 then
  for i = 1, #change.a, 3 do  -- name, value, event time: the newest report wins
    local name, value, ts = change.a[i], change.a[i + 1], change.a[i + 2]
    local old = redis.call('HGET', KEYS[4], '@' .. name)
    if not old or tonumber(ts) >= tonumber(old) then
      redis.call('HSET', KEYS[4], name, value, '@' .. name, ts)
    end
  end
  redis.call('EXPIRE', KEYS[4], ttl)
end
return 1
"""
_CAPS = (MAX_IDENT_USERS, MAX_IDENT_EVENTS, MAX_IDENT_APPS, MAX_IDENT_FRAUD)

#: Writes a risk profile unless the one stored is of a newer event: several workers write
#: the profile of one device or application (its users' events go to different workers),
#: in any order. The document starts with its ``event_time`` (riskmon.core), read here
#: without decoding the JSON; of two documents of one time, the one with the greater
#: SHA-1 (in hex, which sorts the same under any collation) stays, so the order of the
#: writes never matters. KEYS: the profile. ARGV: document, TTL, its
#: event time.
SAVE_PROFILE = """
local old = redis.call('GET', KEYS[1])
if old then
  local t, new = tonumber(string.match(old, '^{"event_time":([^,}]+)')), tonumber(ARGV[3])
  if t and (t > new or (t == new and redis.sha1hex(old) >= redis.sha1hex(ARGV[1]))) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
#: The set of rule versions reverted after they failed on an event (``<version>:<id>``).
REVERTED_RULES = "rules:reverted"
#: The set of rule messages rejected and dead-lettered
#: (``<topic>:<partition>:<offset>:<SHA-1 of the value>``).
REJECTED_RULES = "rules:rejected"


def _reverted_pair(member: str) -> tuple[str, int]:
    version, _, rule_id = member.partition(":")
    return rule_id, int(version)


#: Most seen marks kept per user (the newest): a duplicate of an older event is decided
#: again, with the same output ids.
MAX_USER_SEEN = 50_000


#: Rounds of a cluster round trip that send again what a node redirected (MOVED, ASK,
#: TRYAGAIN) while slots move, before the batch fails; the pauses of TRYAGAIN add up to
#: about 3 s at most.
REDIRECT_ROUNDS = 10

#: A command for a round trip: (the key that routes it on a cluster, its words).
Command = tuple[str, tuple[Any, ...]]
#: The scripts by their SHA-1, which is how Redis calls them (EVALSHA).
SCRIPT_SHAS = {
    script: hashlib.sha1(script.encode()).hexdigest()
    for script in (LOAD_USER, SAVE_USER, LOAD_IDENT, SAVE_IDENT, SAVE_PROFILE)
}


def _script(script: str, keys: list[str], args: Iterable[Any]) -> Command:
    return keys[0], ("EVALSHA", SCRIPT_SHAS[script], len(keys), *keys, *args)


def _command(name: str, key: str, *args: Any) -> Command:
    return key, (name, key, *args)


def _pipelined(client: Any, commands: list[tuple[Any, ...]], transaction: bool) -> list[Any]:
    """Send ``commands`` on one connection of ``client`` (a ``redis.Redis``) and read
    their replies: raw, with an error as its exception in its place, as a redis-py
    pipeline with ``raise_on_error=False`` gives them, inside MULTI/EXEC when
    ``transaction``. Commands are packed by hiredis in C: a redis-py pipeline packs and
    wraps each in Python, about twice the client's time per command."""
    from redis.exceptions import ExecAbortError, ResponseError

    packed = [pack_command(words) for words in commands]
    if transaction:
        packed = [pack_command(("MULTI",)), *packed, pack_command(("EXEC",))]
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command(packed)
        replies: list[Any] = []
        for _ in packed:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()  # replies may be left unread: the connection is unusable
        raise
    finally:
        pool.release(conn)
    if not transaction:
        return replies
    queued, done = replies[1:-1], replies[-1]
    if isinstance(done, ExecAbortError):  # a command was refused when queued
        raise next((x for x in queued if isinstance(x, Exception)), done)
    if isinstance(done, Exception):
        raise done
    return list(done)


def user_keys(prefix: str, user_id: str) -> list[str]:
    """The two Redis keys of a user (document, seen marks), in script order. The hash
    tag starts with ``u:`` so that it is never empty, whatever the id holds (an id
    starting with ``}`` would otherwise put the two keys in different slots).

    >>> user_keys("rm:", "u1")
    ['rm:u:{u:u1}', 'rm:u:{u:u1}:seen']
    """
    return [f"{prefix}u:{{u:{user_id}}}", f"{prefix}u:{{u:{user_id}}}:seen"]


def ident_keys_of(prefix: str, key: str) -> list[str]:
    """The six Redis keys of identifier ``key`` (``kind:value``), in script order.

    >>> ident_keys_of("rm:", "device:d1")
    ['rm:i:{device:d1}:u', 'rm:i:{device:d1}:e', 'rm:i:{device:d1}:f', \
'rm:i:{device:d1}:a', 'rm:i:{device:d1}:app', 'rm:i:{device:d1}:fz']
    """
    base = f"{prefix}i:{{{key}}}"
    return [f"{base}:u", f"{base}:e", f"{base}:f", f"{base}:a", f"{base}:app", f"{base}:fz"]


def _scores(flat: list[bytes]) -> dict[str, float]:
    """``ZRANGE .. WITHSCORES`` (member, score, member, score, ...) as a map."""
    return dict(zip(map(bytes.decode, flat[::2]), map(float, flat[1::2]), strict=True))


def _attrs(flat: list[bytes]) -> tuple[dict[str, str], dict[str, float]]:
    """``HGETALL`` of an identifier's attributes: values, and the event time of each
    (field ``@name``)."""
    values: dict[str, str] = {}
    times: dict[str, float] = {}
    for name, value in zip(flat[::2], flat[1::2], strict=True):
        if name.startswith(b"@"):
            times[name[1:].decode()] = float(value)
        else:
            values[name.decode()] = value.decode()
    return values, times


def _pairs(zset: dict[str, float]) -> list[str]:
    """A map of member -> score as the flat score, member list of SAVE_IDENT."""
    out: list[str] = []
    for member, score in zset.items():
        out.append(repr(score))
        out.append(member)
    return out


class RedisStore:
    """The shared store on Redis, with an asynchronous interface for the worker.

    ``client`` is a synchronous ``redis.Redis`` for one server, or a
    ``redis.cluster.RedisCluster``, both with hiredis: each
    micro-batch's round trip runs in a thread beside the event loop. Their commands are
    packed and parsed in C, about half the cost per command of ``redis.asyncio``, which
    packs in Python and times every reply. A stuck connection fails the batch after the
    client's socket timeout, and the worker retries it.

    The scripts are loaded on the first round trip (on every primary of a cluster) and
    called by hash; a server that lost them (a restart, a failover) gets them again and
    the round trip is repeated once, which is safe: see the module's note on retries.
    """

    def __init__(
        self,
        client: Any,
        prefix: str,
        ttl_s: int,
        seen_ttl_s: int | None = None,
        *,
        verdict_ttl_s: int | None = None,
        action_ttl_s: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.r = client
        self.clock = clock  # the time a seen mark is saved at
        self.p = prefix
        self.ttl = int(ttl_s)
        self.seen_ttl = int(seen_ttl_s or ttl_s)
        self.verdict_ttl = max(self.ttl, int(verdict_ttl_s or 0))
        self.action_ttl = max(self.ttl, int(action_ttl_s or 0))
        self.cluster = isinstance(client, RedisCluster)
        self._scripts_loaded = False  # loaded on the first round trip

    @classmethod
    def from_settings(cls, settings: Any) -> RedisStore:
        r = settings.redis
        options: dict[str, Any] = {
            "decode_responses": False,
            "socket_timeout": 10,
            "socket_connect_timeout": 10,
            # one quick retry, for a connection a restarted Redis dropped; a timeout is
            # not retried (redis-py's default ten retries made a batch against a hung
            # Redis fail after about two minutes, not ten seconds)
            "retry": Retry(
                ExponentialWithJitterBackoff(base=0.05, cap=0.5),
                1,
                supported_errors=(redis.exceptions.ConnectionError,),
            ),
        }
        client: Any
        if r.cluster:
            client = RedisCluster(host=r.host, port=r.port, **options)
        else:
            client = redis.Redis(host=r.host, port=r.port, db=r.db, **options)
        d = settings.detection
        return cls(
            client,
            r.key_prefix,
            d.feature_ttl_s,
            verdict_ttl_s=d.verdict_ttl_s,
            action_ttl_s=d.adjustment_ttl_s,
        )

    def user_ttl(self, fraud: Any, actions: Any) -> int:
        """Seconds a user's document or profile is kept after its last change: a
        confirmed fraudster's ``verdict_ttl_s``, so that a quiet spell does not clear
        the verdict; one with account actions in force, long enough for them to run
        out; the feature TTL otherwise.

        >>> store = RedisStore(None, "rm:", 3600, verdict_ttl_s=86400, action_ttl_s=7200)
        >>> store.user_ttl(False, {}), store.user_ttl(False, {"freeze": 1.0})
        (3600, 7200)
        >>> store.user_ttl(True, {"freeze": 1.0})
        86400
        """
        if fraud:
            return self.verdict_ttl
        return self.action_ttl if actions else self.ttl

    def _load_scripts(self) -> None:
        for script, sha in SCRIPT_SHAS.items():  # on a cluster: on every primary
            loaded = self.r.script_load(script)
            assert (loaded.decode() if isinstance(loaded, bytes) else loaded) == sha
        self._scripts_loaded = True

    def _execute(self, cmds: list[Command], *, transaction: bool) -> list[Any]:
        """Run ``cmds`` in one pipelined round trip (one per node on a cluster); once
        more, after loading the scripts again, if a server had lost them."""
        from redis.exceptions import NoScriptError

        if not self._scripts_loaded:
            self._load_scripts()
        res = self._round_trip(cmds, transaction)
        if any(isinstance(x, NoScriptError) for x in res):
            self._load_scripts()
            res = self._round_trip(cmds, transaction)
        for x in res:
            if isinstance(x, Exception):
                raise x
        return res

    def _round_trip(self, cmds: list[Command], transaction: bool) -> list[Any]:
        if not self.cluster:
            words = [w for _, w in cmds]
            if not transaction:
                return _pipelined(self.r, words, False)
            # Inside MULTI/EXEC a missing script fails only its own command at EXEC, and
            # the others apply. Loading the scripts it calls first, in the same
            # transaction, keeps the save all or nothing.
            shas = {w[1] for w in words if w[0] == "EVALSHA"}
            loads = [("SCRIPT", "LOAD", text) for text, sha in SCRIPT_SHAS.items() if sha in shas]
            return _pipelined(self.r, loads + words, True)[len(loads) :]
        return self._cluster_round_trip(cmds)

    def _cluster_round_trip(self, cmds: list[Command]) -> list[Any]:
        """``cmds`` on a cluster: each command goes to the primary serving its key's slot,
        in one plain pipeline per node. (redis-py's cluster pipeline routes and wraps every
        command in Python: about 2.5 times the client's time, bench/bench_store.py.)

        While slots move (a reshard), the commands a node redirects are sent again, and
        only those: a command answered MOVED, ASK or TRYAGAIN did not run, so sending it
        to the right node runs it once. MOVED: the slot map is read again. ASK: the
        command goes to the importing node, after ``ASKING``. TRYAGAIN: sent again to the
        same node after a short pause. Redis answers TRYAGAIN to a script whose keys are
        not all on one node while their slot migrates, and to one whose keys are partly
        missing (a new user, an identifier without fraud marks) for as long as the slot
        migrates: those wait for the slot to finish moving. After
        :data:`REDIRECT_ROUNDS` rounds, or when a node fails, the slot map is read again
        and the round trip fails; the worker retries the batch, which is safe.
        """
        from redis.exceptions import (
            AskError,
            ConnectionError,
            MovedError,
            TimeoutError,
            TryAgainError,
        )

        r = self.r
        out: list[Any] = [None] * len(cmds)
        todo = list(range(len(cmds)))
        asked: dict[int, Any] = {}  # command -> the importing node an ASK named
        last: Exception | None = None
        try:
            for round_ in range(REDIRECT_ROUNDS):
                nodes: dict[str, tuple[Any, list[int]]] = {}
                owner = r.nodes_manager.get_node_from_slot
                for i in todo:
                    node = asked.get(i) or owner(r.keyslot(cmds[i][0]))
                    nodes.setdefault(node.name, (node, []))[1].append(i)
                again: list[int] = []
                moved = wait = False
                for node, rows in nodes.values():
                    words: list[tuple[Any, ...]] = []
                    for i in rows:
                        if i in asked:
                            words.append(("ASKING",))
                        words.append(cmds[i][1])
                    replies = iter(_pipelined(r.get_redis_connection(node), words, False))
                    for i in rows:
                        if i in asked:
                            next(replies)  # ASKING's OK
                        x = next(replies)
                        if isinstance(x, MovedError | AskError | TryAgainError):
                            last = x
                            again.append(i)
                            if isinstance(x, MovedError):
                                asked.pop(i, None)
                            elif isinstance(x, AskError):
                                asked[i] = self._node_at(*x.node_addr)
                            # TRYAGAIN: to the same node again (the importing one, if asked)
                            moved |= isinstance(x, MovedError)
                            wait |= isinstance(x, TryAgainError)
                        else:
                            out[i] = x
                if not again:
                    return out
                if moved:
                    r.nodes_manager.initialize()
                if wait:
                    time.sleep(min(0.05 * 2**round_, 0.5))
                todo = sorted(again)  # in their first order: a user's commands keep theirs
            assert last is not None
            raise last
        except (MovedError, AskError, TryAgainError, ConnectionError, TimeoutError):
            with contextlib.suppress(Exception):
                r.nodes_manager.initialize()
            raise

    def _node_at(self, host: str, port: int) -> Any:
        """The cluster node at ``host:port`` (reading the slot map again if unknown)."""
        r = self.r
        node = r.get_node(host=host, port=port)
        if node is None:
            r.nodes_manager.initialize()
            node = r.get_node(host=host, port=port)
        if node is None:
            raise redis.exceptions.ConnectionError(f"ASK names an unknown node {host}:{port}")
        return node

    async def close(self) -> None:
        await asyncio.to_thread(self.r.close)

    async def ping(self) -> bool:
        return bool(await asyncio.to_thread(self.r.ping))

    async def load(self, needs: Needs) -> BatchState:
        """The state a batch needs, in one pipelined round trip."""
        return await asyncio.to_thread(self.load_now, needs)

    async def save(self, state: BatchState) -> None:
        """What a batch changed (see the module's note on retries)."""
        await asyncio.to_thread(self.save_now, state)

    async def save_profiles(self, state: BatchState) -> None:
        """The batch's profiles, ahead of the rest, which then leaves them out: the
        worker writes them before it publishes the batch's outputs."""
        await asyncio.to_thread(self.save_profiles_now, state)

    def save_profiles_now(self, state: BatchState) -> None:
        if state.profiles:
            self._execute(self._profile_commands(state), transaction=False)
        state.profiles_saved = True

    def _profile_commands(self, state: BatchState) -> list[Command]:
        commands = []
        for name, doc in state.profiles.items():
            entity, _, entity_id = name.partition(":")
            key = profile_key(self.p, entity, entity_id)
            ttl = self.user_ttl(doc.get("confirmed_fraud"), doc.get("actions"))
            newest_first = (orjson.dumps(doc), ttl, repr(doc["event_time"]))
            commands.append(_script(SAVE_PROFILE, [key], newest_first))
        return commands

    def load_now(self, needs: Needs) -> BatchState:
        p = self.p
        by_user: dict[str, list[str]] = {uid: [] for uid in needs.users}
        loose: list[str] = []  # events without a user
        for eid, uid in needs.events:
            if uid:
                by_user[uid].append(eid)
            else:
                loose.append(eid)

        cmds = [_script(LOAD_USER, user_keys(p, uid), eids) for uid, eids in by_user.items()]
        cap = (MAX_IDENT_FRAUD,)
        cmds += [_script(LOAD_IDENT, ident_keys_of(p, key), cap) for key in needs.idents]
        cmds += [_command("EXISTS", f"{p}seen:{eid}") for eid in loose]
        res = self._execute(cmds, transaction=False)
        state = BatchState()
        i = 0
        for uid, eids in by_user.items():
            doc, marks = res[i]
            i += 1
            if doc is not None:
                state.users[uid] = orjson.loads(doc)
            state.seen.update(eid for eid, mark in zip(eids, marks, strict=True) if mark)
        for key in needs.idents:
            users, events, older_fraud, attrs, apps, fraud = res[i]
            i += 1
            if users or events or older_fraud or attrs or apps or fraud:
                values, times = _attrs(attrs)
                marks = _scores(fraud)
                # marks of releases that kept no time: before any event
                marks.update(dict.fromkeys(map(bytes.decode, older_fraud), 0.0))
                state.idents[key] = IdentState(
                    users=_scores(users),
                    events=_scores(events),
                    fraud=marks,
                    attrs=values,
                    attr_ts=times,
                    apps=_scores(apps),
                )
        for eid in loose:
            if res[i]:
                state.seen.add(eid)
            i += 1
        return state

    def save_now(self, state: BatchState) -> None:
        """Write the batch's changes: one MULTI/EXEC on one server, two ordered round
        trips on a cluster (see the module's note on retries)."""
        p, ttl = self.p, self.ttl
        lowest = repr(state.now - WEEK)
        marks: dict[str, dict[str, float]] = {}
        for key, uid, ts in state.fraud_marks:
            held = marks.setdefault(key, {})
            if ts < held.get(uid, math.inf):
                held[uid] = ts
        idents: list[tuple[str, dict[str, list[str]], str]] = []
        for key, ident in state.idents.items():
            fraud = ident.new_fraud
            more = marks.pop(key, None)
            if more:
                fraud = {**more, **{u: t for u, t in fraud.items() if t < more.get(u, math.inf)}}
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
                change["f"] = _pairs(dict(sorted(fraud.items())))
            if ident.new_attrs:
                times = ident.attr_ts
                change["a"] = [
                    x for k, v in ident.new_attrs.items() for x in (k, v, repr(times[k]))
                ]
            idents.append((key, change, ident.trims(state.now) if ident.dirty else "000"))
        for key, held in marks.items():  # identifiers this batch did not load
            idents.append((key, {"f": _pairs(dict(sorted(held.items())))}, "000"))
        # A seen mark holds the time it was saved, and is kept for the seen TTL from
        # then, as the mark of an event without a user is (SET ... EX): a duplicate
        # comes from the broker (a redelivery, a topic published again) within its
        # retention, which runs in wall-clock time. By event time, a verdict weeks after
        # a user's events (a chargeback) dropped their marks, and a replayed topic
        # decided them again.
        saved_at = repr(self.clock())
        seen_by: dict[str, list[Any]] = {uid: [] for uid in state.dirty_users}
        loose: list[str] = []
        for eid, (uid, _ts) in state.new_seen.items():
            if uid:
                seen_by.setdefault(uid, []).extend((saved_at, eid))
            else:
                loose.append(eid)

        shared: list[Command] = []  # step 1: commutative, idempotent
        for key, change, trim in idents:
            args = (ttl, lowest, orjson.dumps(change), *_CAPS, trim)
            shared.append(_script(SAVE_IDENT, ident_keys_of(p, key), args))
        if not state.profiles_saved:
            shared += self._profile_commands(state)
        users: list[Command] = []  # step 2: each user's document with its seen marks
        for uid, seen in seen_by.items():
            user = state.users[uid]
            try:
                document = orjson.dumps(user)
            except orjson.JSONEncodeError as exc:
                # a fault of the code (the features keep documents writable): the user's
                # stored document stays as it was, rather than every later batch of the
                # partition waiting behind this one for ever
                log.error("user_state_unwritable", user_id=uid, error=str(exc))
                continue
            user_ttl = self.user_ttl(user.get("fraud"), user.get("actions"))
            lowest_seen = repr(float(saved_at) - self.seen_ttl)
            args = (user_ttl, document, self.seen_ttl, lowest_seen, MAX_USER_SEEN, *seen)
            users.append(_script(SAVE_USER, user_keys(p, uid), args))
        for eid in loose:
            users.append(_command("SET", f"{p}seen:{eid}", b"1", "EX", self.seen_ttl))
        if self.cluster:
            self._execute(shared, transaction=False)
            self._execute(users, transaction=False)
        else:  # all or nothing: a retry starts clean
            self._execute(shared + users, transaction=True)
        for ident in state.idents.values():
            ident.clear_changes()

    async def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        raw = await asyncio.to_thread(self.r.get, profile_key(self.p, entity, entity_id))
        return None if raw is None else orjson.loads(raw)

    async def reverted_rules(self) -> set[tuple[str, int]]:
        """The (rule id, version) pairs reverted after they failed on an event."""
        raw = await asyncio.to_thread(self.r.smembers, f"{self.p}{REVERTED_RULES}")
        return {_reverted_pair(m.decode()) for m in raw}

    async def mark_reverted(self, rule_id: str, version: int) -> None:
        """Remember, for every worker and restart, that ``version`` of ``rule_id`` failed
        and was reverted: reading the rules topic again must not put it back."""
        member = f"{version}:{rule_id}"
        await asyncio.to_thread(self.r.sadd, f"{self.p}{REVERTED_RULES}", member)

    async def claim_rejection(self, message: str) -> bool:
        """Whether this worker is the first to dead-letter the rejected rule ``message``
        (an atomic claim): each rejected message is dead-lettered once, not once per
        worker and restart. A worker that then fails to send it gives the claim back
        (:meth:`release_rejection`)."""
        key = f"{self.p}{REJECTED_RULES}"
        return bool(await asyncio.to_thread(self.r.sadd, key, message))

    async def release_rejection(self, message: str) -> None:
        await asyncio.to_thread(self.r.srem, f"{self.p}{REJECTED_RULES}", message)

    async def claim_blob(self, name: str, data: bytes) -> bytes:
        """Set ``name`` to ``data`` unless it is set; what it holds after."""
        key = f"{self.p}{name}"

        def claim() -> Any:
            self.r.set(key, data, nx=True)
            return self.r.get(key)

        held = await asyncio.to_thread(claim)
        return data if held is None else bytes(held)

    async def eviction_policy(self) -> str | None:
        """Redis's ``maxmemory-policy``, or ``None`` where CONFIG is not allowed."""
        try:
            reply = await asyncio.to_thread(self.r.config_get, "maxmemory-policy")
        except Exception:
            return None
        if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
            reply = next(iter(reply.values()))  # a cluster answers per node
        policy = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
        return None if policy is None else str(policy)

    async def get_blob(self, name: str) -> bytes | None:
        data = await asyncio.to_thread(self.r.get, f"{self.p}{name}")
        return None if data is None else bytes(data)

    async def put_blob(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self.r.set, f"{self.p}{name}", data)

    async def keep_blob(self, name: str, data: bytes, ttl_s: int) -> bool:
        """Write ``data`` under ``name`` for ``ttl_s`` seconds unless something is there
        already (the first copy stays); ``True`` if written."""
        done = await asyncio.to_thread(self.r.set, f"{self.p}{name}", data, nx=True, ex=ttl_s)
        return bool(done)


def needs_for(events: Iterable[dict[str, Any]], ident_keys: Any) -> Needs:
    """The keys a batch of events needs, in first-seen order (deterministic)."""
    users: dict[str, None] = {}
    idents: dict[str, None] = {}
    eids: dict[tuple[str, str], None] = {}
    for ev in events:
        uid = ev.get("user_id") or ""
        if uid:
            users[uid] = None
        eids[(ev["event_id"], uid)] = None
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
        self.reverted: set[tuple[str, int]] = set()
        self.rejected: set[str] = set()

    async def load(self, needs: Needs) -> BatchState:
        return self.memory.load(needs)

    async def save(self, state: BatchState) -> None:
        self.memory.save(state)

    async def save_profiles(self, state: BatchState) -> None:
        self.memory.save_profiles(state)

    async def get_profile(self, entity: str, entity_id: str) -> dict[str, Any] | None:
        return self.memory.get_profile(entity, entity_id)

    async def reverted_rules(self) -> set[tuple[str, int]]:
        return set(self.reverted)

    async def mark_reverted(self, rule_id: str, version: int) -> None:
        self.reverted.add((rule_id, version))

    async def claim_rejection(self, message: str) -> bool:
        new = message not in self.rejected
        self.rejected.add(message)
        return new

    async def release_rejection(self, message: str) -> None:
        self.rejected.discard(message)

    async def claim_blob(self, name: str, data: bytes) -> bytes:
        return self.blobs.setdefault(name, data)

    async def eviction_policy(self) -> str | None:
        return "noeviction"

    async def get_blob(self, name: str) -> bytes | None:
        return self.blobs.get(name)

    async def put_blob(self, name: str, data: bytes) -> None:
        self.blobs[name] = data

    async def keep_blob(self, name: str, data: bytes, ttl_s: int) -> bool:
        if name in self.blobs:  # (no clock here: kept for good)
            return False
        self.blobs[name] = data
        return True

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

"""Entity state behind the features: what Riskmon remembers about users and identifiers.

Two kinds of state, chosen so that several workers can share them safely:

* :class:`UserState`: one JSON document per user. Input topics are keyed by
  ``user_id``, so one user is handled by one worker at a time: read, change, write.
* :class:`IdentState`: per shared identifier (device, ip, wifi, sim, payout account,
  phone, id number). Many users, so many workers, touch one identifier: its state only
  grows by commutative steps (add a user with a timestamp, add an event, add a fraud
  user, set an attribute) that Redis applies as ZADD/SADD/HSET, and trims the same way
  in memory and in Redis. Nothing is lost when two workers write at once.

Bounds keep memory finite: at most :data:`MAX_IDENT_USERS` users and
:data:`MAX_IDENT_EVENTS` events per identifier (counts saturate there), 7 days of
history, and a TTL on every Redis key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WEEK = 7 * 86400.0
MAX_IDENT_USERS = 200
MAX_IDENT_EVENTS = 256


@dataclass
class IdentState:
    """Users and events seen on one identifier, as Redis sorted sets hold them."""

    users: dict[str, float] = field(default_factory=dict)  # user_id -> last seen ts
    events: dict[str, float] = field(default_factory=dict)  # event_id -> ts
    fraud: set[str] = field(default_factory=set)  # users with a confirmed fraud label
    attrs: dict[str, str] = field(default_factory=dict)  # e.g. device flags
    # what this batch changed, to be written back as commutative steps
    new_users: dict[str, float] = field(default_factory=dict)
    new_events: dict[str, float] = field(default_factory=dict)
    new_fraud: set[str] = field(default_factory=set)
    new_attrs: dict[str, str] = field(default_factory=dict)

    def add(self, user_id: str, event_id: str, ts: float) -> None:
        if user_id and ts > self.users.get(user_id, float("-inf")):
            self.users[user_id] = ts
            self.new_users[user_id] = ts
        self.events[event_id] = ts
        self.new_events[event_id] = ts

    def mark_fraud(self, user_id: str) -> None:
        if user_id not in self.fraud:
            self.fraud.add(user_id)
            self.new_fraud.add(user_id)

    def set_attrs(self, attrs: dict[str, str]) -> None:
        for k, v in attrs.items():
            if self.attrs.get(k) != v:
                self.attrs[k] = v
                self.new_attrs[k] = v

    @property
    def dirty(self) -> bool:
        return bool(self.new_users or self.new_events or self.new_fraud or self.new_attrs)

    def clear_changes(self) -> None:
        self.new_users = {}
        self.new_events = {}
        self.new_fraud = set()
        self.new_attrs = {}

    def trim(self, now: float) -> None:
        """What Redis does on write: drop entries older than a week, keep the newest."""
        self.users = _trim_zset(self.users, now - WEEK, MAX_IDENT_USERS)
        self.events = _trim_zset(self.events, now - WEEK, MAX_IDENT_EVENTS)

    def counts(self, ts: float) -> tuple[int, int, int, int, int, int, float]:
        """(users 1h, 24h, 7d, events 1h, 24h, 7d, fraud share) as of ``ts``."""
        h, d, w = ts - 3600.0, ts - 86400.0, ts - WEEK
        u1 = u24 = u7 = 0
        for t in self.users.values():
            if t >= w:
                u7 += 1
                if t >= d:
                    u24 += 1
                    if t >= h:
                        u1 += 1
        e1 = e24 = e7 = 0
        for t in self.events.values():
            if t >= w:
                e7 += 1
                if t >= d:
                    e24 += 1
                    if t >= h:
                        e1 += 1
        share = len(self.fraud) / len(self.users) if self.users else 0.0
        return u1, u24, u7, e1, e24, e7, min(share, 1.0)


def _trim_zset(zset: dict[str, float], min_score: float, cap: int) -> dict[str, float]:
    """ZREMRANGEBYSCORE -inf (min_score, then keep the ``cap`` highest (score, member))."""
    if len(zset) <= cap and (not zset or min(zset.values()) >= min_score):
        return zset
    kept = {m: s for m, s in zset.items() if s >= min_score}
    if len(kept) > cap:
        ordered = sorted(kept.items(), key=lambda kv: (kv[1], kv[0]))
        kept = dict(ordered[-cap:])
    return kept


def new_user_state(ts: float) -> dict[str, Any]:
    """A fresh user document (plain JSON types only, so it stores as it is)."""
    return {
        "first_ts": ts,
        "devices": {},  # device_id -> first seen
        "sims": {},  # sim hash -> first seen
        "ips": {},  # ip -> last seen
        "accounts": {},  # payout account hash -> first bound
        "idents": [],  # [kind, value] pairs this user was seen with
        "last": {},  # new_device / sim_change / password_reset / failed_login / new_account
        "failed_logins": [],  # ts of recent failed logins
        "amounts": {},  # kind -> [count, sum, max]
        "income": None,
        "repay": [0, 0, 0, 0],  # failed, late, max days past due, repaid loans
        "apps": [],  # [ts, amount] of recent applications
        "outs": [],  # ts of recent withdrawals / transfers out
        "disb": None,  # [ts, amount, moved out since]
        "geo": None,  # [lat, lon, ts]
        "n_apps": 0,
        "fraud": False,
        "alerts": {},  # pattern -> last alert ts (dedup)
        "actions": {},  # action -> expires at (idempotent adjustments)
    }

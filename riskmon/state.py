"""Entity state behind the features: what Riskmon remembers about users and identifiers.

Two kinds of state, chosen so that several workers can share them safely:

* :class:`UserState`: one JSON document per user. Input topics are keyed by
  ``user_id``, so one user is handled by one worker at a time: read, change, write.
* :class:`IdentState`: per shared identifier (device, ip, wifi, sim, payout account,
  phone, id number). Many users, so many workers, touch one identifier: its state only
  grows by commutative steps (add a user with a timestamp, add an event, add an
  application with its amount, add a fraud user at its label's time, set an attribute)
  that Redis applies as
  ZADD/SADD/HSET, and trims the same way in memory and in Redis. Nothing is lost when two
  workers write at once.

Bounds keep memory finite: at most :data:`MAX_IDENT_USERS` users,
:data:`MAX_IDENT_EVENTS` events, :data:`MAX_IDENT_APPS` applications and
:data:`MAX_IDENT_FRAUD` users with a fraud mark per identifier (counts saturate there),
7 days of history, and a TTL on every Redis key.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from typing import Any

WEEK = 7 * 86400.0
MAX_IDENT_USERS = 200
MAX_IDENT_EVENTS = 256
MAX_IDENT_APPS = 64
#: users with a fraud mark kept per identifier: an identifier with this many has a fraud
#: share of 1 (it holds at most :data:`MAX_IDENT_USERS` users once a batch is saved, so
#: more marks would change nothing then)
MAX_IDENT_FRAUD = MAX_IDENT_USERS


@dataclass(slots=True, init=False)
class IdentState:
    """Users and events seen on one identifier, as Redis sorted sets hold them."""

    users: dict[str, float] = field(default_factory=dict)  # user_id -> last seen ts
    events: dict[str, float] = field(default_factory=dict)  # event_id -> ts
    # users with a confirmed fraud label -> the event time of the (earliest) label: an
    # event counts the marks of its own time and before, however late it arrives
    fraud: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)  # e.g. device flags
    attr_ts: dict[str, float] = field(default_factory=dict)  # event time of each attribute
    # loan applications carrying the identifier: "<amount>|<application_id>" -> ts
    apps: dict[str, float] = field(default_factory=dict)
    # what this batch changed, to be written back as commutative steps
    new_users: dict[str, float] = field(default_factory=dict)
    new_events: dict[str, float] = field(default_factory=dict)
    new_fraud: dict[str, float] = field(default_factory=dict)
    new_attrs: dict[str, str] = field(default_factory=dict)
    new_apps: dict[str, float] = field(default_factory=dict)
    # the scores of ``users`` and ``events``, sorted (built when first counted): a window
    # count is one bisection
    _user_ts: list[float] | None = field(default=None, init=False, repr=False, compare=False)
    _event_ts: list[float] | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(
        self,
        users: dict[str, float] | None = None,
        events: dict[str, float] | None = None,
        fraud: dict[str, float] | None = None,
        attrs: dict[str, str] | None = None,
        attr_ts: dict[str, float] | None = None,
        apps: dict[str, float] | None = None,
    ) -> None:
        # written out: about one event in two meets a new identifier, and the generated
        # __init__ calls a factory for each of the eleven containers
        self.users = {} if users is None else users
        self.events = {} if events is None else events
        self.fraud = {} if fraud is None else fraud
        self.attrs = {} if attrs is None else attrs
        self.attr_ts = {} if attr_ts is None else attr_ts
        self.apps = {} if apps is None else apps
        self.new_users = {}
        self.new_events = {}
        self.new_fraud = {}
        self.new_attrs = {}
        self.new_apps = {}
        self._user_ts = None
        self._event_ts = None

    def add(self, user_id: str, event_id: str, ts: float) -> None:
        """Fold one event in (:meth:`record` without the counts)."""
        self.record(user_id, event_id, ts)

    def record(
        self, user_id: str, event_id: str, ts: float
    ) -> tuple[int, int, int, int, int, int, float]:
        """:meth:`add` the event, then its :meth:`counts` as of ``ts``, in one call.

        >>> s = IdentState()
        >>> s.record("u1", "e1", 100.0), s.record("u2", "e2", 4000.0)
        ((1, 1, 1, 1, 1, 1, 0.0), (1, 2, 2, 1, 2, 2, 0.0))
        """
        users = self.users
        us = self._user_ts
        if us is None or len(us) != len(users):
            us = self._user_ts = sorted(users.values())
        events = self.events
        es = self._event_ts
        if es is None or len(es) != len(events):
            es = self._event_ts = sorted(events.values())
        late = 0  # 1: the user was last seen after ``ts``, so this event is late
        if user_id:
            old = users.get(user_id)
            if old is None:
                if ts > _NEG_INF:
                    users[user_id] = self.new_users[user_id] = ts
                    if us and us[-1] > ts:
                        insort(us, ts)
                    else:
                        us.append(ts)
            elif ts > old:
                users[user_id] = self.new_users[user_id] = ts
                if us[-1] == old:  # the newest score moves up: it stays the newest
                    us[-1] = ts
                else:
                    _replace(us, old, ts)
            elif old > ts:
                late = 1
        old = events.get(event_id)
        events[event_id] = self.new_events[event_id] = ts
        if old is not None:
            _replace(es, old, ts)
        elif es and es[-1] > ts:
            insort(es, ts)
        else:
            es.append(ts)
        hour, day, week = ts - 3600.0, ts - 86400.0, ts - WEEK
        if es[0] >= hour and es[-1] <= ts:
            e1 = e2 = e3 = len(es)
        else:
            e1, e2, e3 = _windows(es, ts, hour, day, week)
        if e3 > MAX_IDENT_EVENTS:  # counts saturate at what a saved identifier holds,
            e1, e2, e3 = (min(e, MAX_IDENT_EVENTS) for e in (e1, e2, e3))  # however batched
        if not us:
            return 0, 0, 0, e1, e2, e3, 0.0
        if us[0] >= hour and us[-1] <= ts:  # often: the one user, seen just now
            u1 = u2 = u3 = len(us)
        else:
            u1, u2, u3 = _windows(us, ts, hour, day, week)
        if late:
            u1, u2, u3 = u1 + 1, u2 + 1, u3 + 1
        if u3 > MAX_IDENT_USERS:
            u1, u2, u3 = (min(u, MAX_IDENT_USERS) for u in (u1, u2, u3))
        share = _share(self.fraud, len(us), ts) if self.fraud else 0.0
        return u1, u2, u3, e1, e2, e3, share

    def add_application(self, application_id: str, amount: float, ts: float) -> None:
        """Remember a loan application that carried this identifier."""
        member = f"{float(amount)!r}|{application_id}"
        if self.apps.get(member) != ts:
            self.apps[member] = self.new_apps[member] = ts

    def application_counts(self, ts: float) -> tuple[int, int, float, int]:
        """(applications in 1 h, in 24 h, amount applied for in 24 h, distinct amounts in
        24 h) as of ``ts``, from the applications that carried this identifier.

        >>> s = IdentState()
        >>> for i, (amount, t) in enumerate([(500, 0.0), (800, 80_000.0), (800, 86_000.0)]):
        ...     s.add_application(f"a{i}", amount, t)
        >>> s.application_counts(86_401.0)
        (1, 2, 1600.0, 1)
        """
        hour, day = ts - 3600.0, ts - 86400.0
        n_hour = n_day = 0
        total = 0.0
        amounts = set()
        for member, t in self.apps.items():
            if day <= t <= ts:
                n_day += 1
                if t >= hour:
                    n_hour += 1
                amount = member[: member.index("|")]
                amounts.add(amount)
                total += float(amount)
        return n_hour, n_day, total, len(amounts)

    def add_fraud(self, user_id: str, ts: float) -> bool:
        """Add a user with a confirmed fraud label of event time ``ts``, up to
        :data:`MAX_IDENT_FRAUD` users (as the Redis store's script does); a user marked
        already keeps the earlier time. ``True`` if that changed anything."""
        fraud = self.fraud
        old = fraud.get(user_id)
        if old is None:
            if len(fraud) >= MAX_IDENT_FRAUD:
                return False
        elif old <= ts:
            return False
        fraud[user_id] = ts
        return True

    def mark_fraud(self, user_id: str, ts: float) -> None:
        """:meth:`add_fraud`, noted as a change of this batch.

        >>> s = IdentState()
        >>> for k in range(MAX_IDENT_FRAUD + 5):
        ...     s.mark_fraud(f"u{k}", 100.0)
        >>> s.mark_fraud("u0", 50.0); s.mark_fraud("u1", 150.0)
        >>> len(s.fraud), len(s.new_fraud), s.fraud["u0"], s.fraud["u1"]
        (200, 200, 50.0, 100.0)
        """
        if self.add_fraud(user_id, ts):
            self.new_fraud[user_id] = self.fraud[user_id]

    def set_attr(self, name: str, value: str, ts: float) -> None:
        """Set one attribute (a device flag) as reported at event time ``ts``. The newest
        report wins, in event time: a late or repeated older report changes nothing, so
        attributes, like the rest of the identifier, do not depend on the order of writes.

        >>> s = IdentState()
        >>> s.set_attr("is_rooted", "1", 200.0); s.set_attr("is_rooted", "0", 100.0)
        >>> s.attrs, s.new_attrs
        ({'is_rooted': '1'}, {'is_rooted': '1'})
        """
        old = self.attr_ts.get(name)
        if old is not None and ts < old:
            return
        if old != ts or self.attrs.get(name) != value:
            self.attrs[name] = value
            self.attr_ts[name] = ts
            self.new_attrs[name] = value

    @property
    def dirty(self) -> bool:
        return bool(
            self.new_users or self.new_events or self.new_fraud or self.new_attrs or self.new_apps
        )

    def clear_changes(self) -> None:
        if self.new_users:
            self.new_users = {}
        if self.new_events:
            self.new_events = {}
        if self.new_fraud:
            self.new_fraud = {}
        if self.new_attrs:
            self.new_attrs = {}
        if self.new_apps:
            self.new_apps = {}

    def settle(self, now: float) -> bool:
        """After a batch in memory: forget the changes and :meth:`trim`; ``True`` if
        there were changes (what Redis would have been sent), else nothing is done."""
        if not (
            self.new_users or self.new_events or self.new_fraud or self.new_attrs or self.new_apps
        ):
            return False
        self.clear_changes()
        self.trim(now)
        return True

    def trims(self, now: float) -> str:
        """Which of the users, events and applications windows :meth:`trim` would cut
        now, as ``"1"``/``"0"`` flags (what the Redis store tells its save script, so
        Redis does only the trims that remove something).

        >>> s = IdentState()
        >>> _ = s.record("u1", "e1", 0.0), s.record("u2", "e2", 8 * 86400.0)
        >>> s.trims(8 * 86400.0)
        '110'
        """
        min_score = now - WEEK
        out = ""
        for zset, cached, cap in (
            (self.users, self._user_ts, MAX_IDENT_USERS),
            (self.events, self._event_ts, MAX_IDENT_EVENTS),
            (self.apps, None, MAX_IDENT_APPS),
        ):
            if len(zset) > cap:
                out += "1"
            elif not zset:
                out += "0"
            else:
                low = cached[0] if cached and len(cached) == len(zset) else min(zset.values())
                out += "1" if low < min_score else "0"
        return out

    def trim(self, now: float) -> None:
        """What Redis does on write: drop entries older than a week, keep the newest."""
        min_score = now - WEEK
        users, events = self.users, self.events
        sorted_ts = self._user_ts
        if sorted_ts is None or len(sorted_ts) != len(users):
            self.users = _trim_zset(users, min_score, MAX_IDENT_USERS)
            self._user_ts = None
        elif sorted_ts and (sorted_ts[0] < min_score or len(sorted_ts) > MAX_IDENT_USERS):
            self.users = _trim_sorted(users, sorted_ts, min_score, MAX_IDENT_USERS)
        sorted_ts = self._event_ts
        if sorted_ts is None or len(sorted_ts) != len(events):
            self.events = _trim_zset(events, min_score, MAX_IDENT_EVENTS)
            self._event_ts = None
        elif sorted_ts and (sorted_ts[0] < min_score or len(sorted_ts) > MAX_IDENT_EVENTS):
            self.events = _trim_sorted(events, sorted_ts, min_score, MAX_IDENT_EVENTS)
        if self.apps:
            self.apps = _trim_zset(self.apps, min_score, MAX_IDENT_APPS)

    def counts(self, ts: float) -> tuple[int, int, int, int, int, int, float]:
        """(users 1h, 24h, 7d, events 1h, 24h, 7d, fraud share) as of ``ts``."""
        us = self._user_ts
        if us is None or len(us) != len(self.users):
            us = self._user_ts = sorted(self.users.values())
        es = self._event_ts
        if es is None or len(es) != len(self.events):
            es = self._event_ts = sorted(self.events.values())
        return _window_counts(us, es, self.fraud, ts)


_NEG_INF = float("-inf")


def _share(fraud: dict[str, float], n_users: int, ts: float) -> float:
    """The fraud share as of ``ts``: users marked by labels of that time or before, out of
    the ``n_users`` the identifier holds, at most :data:`MAX_IDENT_USERS` (1 with
    :data:`MAX_IDENT_FRAUD` marks).

    >>> _share({"u1": 100.0, "u2": 300.0}, 4, 200.0), _share({"u1": 100.0}, 4, 50.0)
    (0.25, 0.0)
    """
    if not n_users:
        return 0.0
    n = sum(1 for t in fraud.values() if t <= ts)
    if n >= MAX_IDENT_FRAUD:
        return 1.0
    # of the users a saved identifier holds at most, however the stream is batched
    share = n / min(n_users, MAX_IDENT_USERS)
    return 1.0 if share > 1.0 else share


def _window_counts(
    us: list[float], es: list[float], fraud: dict[str, float], ts: float
) -> tuple[int, int, int, int, int, int, float]:
    """Window counts from the sorted user and event times (see :meth:`IdentState.counts`).

    A window ends at ``ts``: what the state holds of later times (an event that arrives
    late meets them) is not counted.
    """
    nu, ne = len(us), len(es)
    if nu and us[-1] > ts:
        nu = bisect_right(us, ts)
    if ne and es[-1] > ts:
        ne = bisect_right(es, ts)
    h, d, w = ts - 3600.0, ts - 86400.0, ts - WEEK
    share = _share(fraud, len(us), ts) if fraud else 0.0
    mu, me = MAX_IDENT_USERS, MAX_IDENT_EVENTS  # what a saved identifier holds at most
    return (
        min(mu, nu - bisect_left(us, h, 0, nu)),
        min(mu, nu - bisect_left(us, d, 0, nu)),
        min(mu, nu - bisect_left(us, w, 0, nu)),
        min(me, ne - bisect_left(es, h, 0, ne)),
        min(me, ne - bisect_left(es, d, 0, ne)),
        min(me, ne - bisect_left(es, w, 0, ne)),
        share,
    )


def _windows(
    sorted_ts: list[float], ts: float, hour: float, day: float, week: float
) -> tuple[int, int, int]:
    """How many of the sorted, non-empty ``sorted_ts`` fall in ``[hour, ts]``, ``[day,
    ts]`` and ``[week, ts]`` (as :func:`_window_counts` counts), without the bisections
    that a window reaching back past the oldest score does not need."""
    n = len(sorted_ts)
    if sorted_ts[-1] > ts:
        n = bisect_right(sorted_ts, ts)
    first = sorted_ts[0]
    if first >= hour:
        return n, n, n
    return (
        n - bisect_left(sorted_ts, hour, 0, n),
        n if first >= day else n - bisect_left(sorted_ts, day, 0, n),
        n if first >= week else n - bisect_left(sorted_ts, week, 0, n),
    )


def _replace(sorted_ts: list[float], old: float, new: float) -> None:
    """Move one score of a sorted list from ``old`` to ``new``."""
    i = bisect_left(sorted_ts, old)
    if i < len(sorted_ts) and sorted_ts[i] == old:
        del sorted_ts[i]
    insort(sorted_ts, new)


def _trim_sorted(
    zset: dict[str, float], sorted_ts: list[float], min_score: float, cap: int
) -> dict[str, float]:
    """:func:`_trim_zset` given the scores sorted, which are trimmed alike in place.

    Usually one or two of the oldest entries go, and those sit at the front of the map
    (insertion order is about time order): they are found without sorting the members.
    With a tie in score at the cut, which members stay depends on their names, so the
    general :func:`_trim_zset` decides.

    >>> z = {"a": 1.0, "b": 5.0, "c": 3.0, "d": 4.0}
    >>> ts = sorted(z.values())
    >>> _trim_sorted(z, ts, 2.0, 2), ts
    ({'b': 5.0, 'd': 4.0}, [4.0, 5.0])
    """
    n = len(sorted_ts)
    cut = max(bisect_left(sorted_ts, min_score), n - cap)  # how many go
    if cut <= 0:
        return zset
    if cut >= n:
        sorted_ts.clear()
        return {}
    last = sorted_ts[cut - 1]
    del sorted_ts[:cut]
    if last == sorted_ts[0]:
        return _trim_zset(zset, min_score, cap)
    dead = []
    for member, score in zset.items():
        if score <= last:
            dead.append(member)
            if len(dead) == cut:
                break
    for member in dead:
        del zset[member]
    return zset


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

"""``simulate(config) -> (events, truth)``: the whole run, pure and deterministic.

Every entity and incident draws from its own ``random.Random`` seeded by a string
derived from the run (string seeds go through SHA-512, so ``PYTHONHASHSEED`` plays no
part), and nothing iterates a set. The same config gives the same events, byte for
byte.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from riskmon.sim.clock import fmt_ts
from riskmon.sim.config import SimConfig
from riskmon.sim.lifecycle import World, honest_life
from riskmon.sim.patterns import (
    account_takeover,
    bust_out,
    device_farm,
    lookalike_campus,
    lookalike_emulator_tester,
    lookalike_family_phone,
    lookalike_new_phone_card,
    multi_lending,
)
from riskmon.sim.population import Ids, new_person, session_net
from riskmon.sim.recorder import Actor, Recorder, SimEvent

EVENT_PREFIX = {"application": "app", "device": "dev", "transaction": "txn", "label": "lab"}

#: share of the fraud users per pattern, and the smallest incident
FRAUD_PLAN = (
    ("device_farm", 0.35, 3),
    ("account_takeover", 0.20, 1),
    ("multi_lending", 0.20, 1),
    ("bust_out", 0.25, 2),
)
#: share of the look-alike users per pattern, and the smallest group
LOOKALIKE_PLAN = (
    ("lookalike_family_phone", 0.20, 2),
    ("lookalike_campus", 0.40, 4),
    ("lookalike_new_phone_card", 0.30, 1),
    ("lookalike_emulator_tester", 0.10, 1),
)
#: below this many users, patterns get no guaranteed minimum
MIN_USERS_FOR_ALL_PATTERNS = 100


@dataclass(frozen=True)
class Plan:
    """How many users go to each pattern, and the incident sizes."""

    honest: int
    account_takeover: int
    incidents: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def users(self) -> int:
        return self.honest + sum(sum(sizes) for _, sizes in self.incidents)


def partition(total: int, lo: int, hi: int, rng: random.Random) -> list[int]:
    """Split ``total`` users into groups of ``lo``..``hi`` (a short remainder joins one).

    >>> partition(20, 3, 8, random.Random(1))
    [4, 7, 3, 6]
    >>> partition(2, 3, 8, random.Random(1))
    [2]
    >>> partition(0, 3, 8, random.Random(1))
    []
    """
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(left, rng.randint(lo, hi))
        if 0 < left - size < lo:
            size = left if left <= hi else left - lo
        sizes.append(size)
        left -= size
    return sizes


def _allot(count: int, share: float, minimum: int, floor: bool) -> int:
    wanted = round(count * share)
    return max(minimum, wanted) if floor and count > 0 else wanted


def make_plan(cfg: SimConfig, rng: random.Random) -> Plan:
    """Allot users to the fraud patterns and look-alikes; the rest are plain honest."""
    floor = cfg.users >= MIN_USERS_FOR_ALL_PATTERNS
    n_fraud = round(cfg.users * cfg.fraud_rate)
    n_look = round(cfg.users * cfg.lookalike_rate)
    fraud = {name: _allot(n_fraud, share, low, floor) for name, share, low in FRAUD_PLAN}
    look = {name: _allot(n_look, share, low, floor) for name, share, low in LOOKALIKE_PLAN}
    farm_size = (2, 5) if cfg.stealthy else (4, 14)
    ring_size = (2, 4) if cfg.stealthy else (3, 6)
    incidents = (
        ("device_farm", tuple(partition(fraud["device_farm"], farm_size[0], farm_size[1], rng))),
        ("multi_lending", (1,) * fraud["multi_lending"]),
        ("bust_out", tuple(partition(fraud["bust_out"], ring_size[0], ring_size[1], rng))),
        ("lookalike_family_phone", tuple(partition(look["lookalike_family_phone"], 2, 3, rng))),
        ("lookalike_campus", tuple(partition(look["lookalike_campus"], 6, 30, rng))),
        ("lookalike_new_phone_card", (1,) * look["lookalike_new_phone_card"]),
        (
            "lookalike_emulator_tester",
            tuple(partition(look["lookalike_emulator_tester"], 1, 3, rng)),
        ),
    )
    taken = sum(sum(sizes) for _, sizes in incidents)
    honest_all = max(0, cfg.users - taken)
    ato = min(fraud["account_takeover"], honest_all)
    return Plan(honest=honest_all - ato, account_takeover=ato, incidents=incidents)


def _rng(tag: str, *parts: object) -> random.Random:
    return random.Random(":".join([tag, *map(str, parts)]))


def _play(cfg: SimConfig) -> list[SimEvent]:
    tag = cfg.run_tag  # the random draws
    ids = Ids(cfg.id_tag)  # the names
    rec = Recorder(ids, cfg.start_ms, cfg.end_ms, cfg.label_end_ms)
    merchants = [ids.secret("merchant") for _ in range(60)]
    world = World(cfg, rec, ids, merchants)
    plan = make_plan(cfg, _rng(tag, "plan"))

    for i in range(plan.honest):
        rng = _rng(tag, "honest", i)
        person = new_person(rng, ids, cfg.start_ms, cfg.days)
        joined = None if rng.random() < 0.6 else world.moment(rng, rng.randrange(cfg.days))
        honest_life(world, rng, Actor(person.user_id, "honest"), person, joined_at=joined)

    for k in range(plan.account_takeover):
        rng = _rng(tag, "account_takeover", k)
        victim = new_person(rng, ids, cfg.start_ms, cfg.days)
        victim.activity = max(victim.activity, 0.5)
        victim.extra_accounts.append(ids.secret("account"))
        need = 4 if cfg.stealthy else 1
        day = rng.randint(min(2, cfg.days - 1), max(min(2, cfg.days - 1), cfg.days - 1 - need))
        rhythm = "honest" if cfg.stealthy else "fraud"
        t_attack = world.moment(rng, day, rhythm)
        # takeovers go after active accounts: the victim used the app shortly before
        t_seen = world.moment(rng, day - 1 - rng.randrange(2)) if day else cfg.start_ms
        if t_seen < t_attack:
            net = session_net(rng, victim)
            actor = Actor(victim.user_id, "honest")
            rec.device(actor, t_seen, "app_open", victim.device, net)
            rec.device(actor, t_seen + rng.randrange(5_000, 40_000), "login", victim.device, net)
        noticed = account_takeover(world, rng, f"account_takeover-{k:04d}", victim, t_attack)
        honest_life(
            world, rng, Actor(victim.user_id, "honest", until=noticed), victim, joined_at=None
        )

    for pattern, sizes in plan.incidents:
        for k, size in enumerate(sizes):
            rng = _rng(tag, pattern, k)
            incident = f"{pattern}-{k:04d}"
            if pattern == "device_farm":
                device_farm(world, rng, incident, size)
            elif pattern == "multi_lending":
                multi_lending(world, rng, incident)
            elif pattern == "bust_out":
                bust_out(world, rng, incident, size)
            elif pattern == "lookalike_family_phone":
                lookalike_family_phone(world, rng, incident, size)
            elif pattern == "lookalike_campus":
                lookalike_campus(world, rng, incident, size)
            elif pattern == "lookalike_new_phone_card":
                lookalike_new_phone_card(world, rng, incident)
            else:
                lookalike_emulator_tester(world, rng, incident, size)
    return rec.events


def _target_times(ordered: list[SimEvent]) -> tuple[dict[str, int], dict[str, int]]:
    """First time each application/transaction id and each user appears."""
    objects: dict[str, int] = {}
    users: dict[str, int] = {}
    for ev in ordered:
        p = ev.payload
        kind = p["event_type"]
        if kind == "label":
            continue
        if kind == "application":
            objects.setdefault(p["application_id"], ev.ts)
        elif kind == "transaction":
            objects.setdefault(p["txn_id"], ev.ts)
        if p["user_id"]:
            users.setdefault(p["user_id"], ev.ts)
    return objects, users


def iter_simulation(cfg: SimConfig) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Events in ``ts`` order, each with its truth row (``None`` for labels).

    Labels whose target never happened (it fell outside the window) are dropped, and
    every label comes strictly after what it labels.
    """
    tag = cfg.id_tag
    ordered = sorted(_play(cfg), key=lambda ev: (ev.ts, ev.seq))
    objects, users = _target_times(ordered)
    position = 0
    for ev in ordered:
        p = ev.payload
        kind = p["event_type"]
        if kind == "label":
            target = users if p["target_type"] == "user" else objects
            seen = target.get(p["target_id"])
            if seen is None or seen >= ev.ts:
                continue
        position += 1
        ts = fmt_ts(ev.ts)
        event = {
            "event_id": f"{EVENT_PREFIX[kind]}-{tag}-{position:08d}",
            "event_type": kind,
            "ts": ts,
        }
        event.update(p)
        if ev.truth is None:
            yield event, None
            continue
        is_fraud, pattern, incident, step, money_out = ev.truth
        yield (
            event,
            {
                "event_id": event["event_id"],
                "ts": ts,
                "user_id": p["user_id"],
                "event_type": kind,
                "is_fraud": is_fraud,
                "pattern": pattern,
                "incident": incident,
                "step": step,
                "money_out": money_out,
            },
        )


def simulate(cfg: SimConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All events (labels included) in ``ts`` order, and one truth row per non-label event."""
    events: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for event, row in iter_simulation(cfg):
        events.append(event)
        if row is not None:
            truth.append(row)
    return events, truth


def summarize(events: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts for a log line: events per type, users, fraud share, fraud money moved out."""
    per_type: dict[str, int] = {}
    for ev in events:
        per_type[ev["event_type"]] = per_type.get(ev["event_type"], 0) + 1
    fraud_users: dict[str, bool] = {}
    patterns: dict[str, int] = {}
    money = 0.0
    for row in truth:
        uid = row["user_id"]
        if uid:
            fraud_users[uid] = fraud_users.get(uid, False) or row["is_fraud"]
        if row["is_fraud"]:
            money += row["money_out"]
        patterns[row["pattern"]] = patterns.get(row["pattern"], 0) + 1
    n_users = len(fraud_users)
    n_fraud = sum(fraud_users.values())
    return {
        "events": len(events),
        "per_type": per_type,
        "users": n_users,
        "fraud_users": n_fraud,
        "fraud_user_share": round(n_fraud / n_users, 4) if n_users else 0.0,
        "fraud_money_out": round(money, 2),
        "events_per_pattern": patterns,
    }

"""Fraud patterns and the honest look-alikes that resemble them.

One function per pattern; each plays one incident into the world's recorder, with
the truth (pattern, incident id, step) attached to every event. ``--stealthy`` makes
fraud slower and quieter: more time between steps, fewer identities per device,
smaller amounts, fewer failed logins, cash-out spread over hours, honest-looking
activity in between.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from riskmon.sim.clock import DAY, HOUR, MINUTE, SECOND, awake_after, lognormal_ms
from riskmon.sim.lifecycle import (
    Loan,
    World,
    draw_fate,
    honest_life,
    honest_loan,
    onboard,
    repay,
    round_amount,
    sessions,
    use_funds,
)
from riskmon.sim.population import (
    CITIES,
    Device,
    Net,
    Person,
    city_ip,
    datacenter_ip,
    jitter,
    mobile_ip,
    new_device,
    new_person,
    pick_city,
    session_net,
)
from riskmon.sim.recorder import Actor

FRAUD_PATTERNS = ("device_farm", "account_takeover", "multi_lending", "bust_out")
LOOKALIKE_PATTERNS = (
    "lookalike_family_phone",
    "lookalike_campus",
    "lookalike_new_phone_card",
    "lookalike_emulator_tester",
)


def _device(world: World, rng: random.Random, **kwargs: Any) -> Device:
    return new_device(rng, world.ids, world.start, world.days, **kwargs)


def _person(world: World, rng: random.Random, **kwargs: Any) -> Person:
    return new_person(rng, world.ids, world.start, world.days, **kwargs)


def _near(rng: random.Random, net: Net, scale: float = 0.002) -> Net:
    lat, lon = jitter(rng, net.lat, net.lon, scale)
    return Net(net.ip, net.wifi_hash, lat, lon)


def _around(net: Net) -> Callable[[random.Random], Net]:
    """Sessions on one network, a few metres apart."""
    return lambda rng: _near(rng, net)


def _latest_day(world: World, needed_days: int) -> int:
    return max(0, world.days - 1 - needed_days)


def cash_out(
    world: World,
    rng: random.Random,
    actor: Actor,
    dev: Device,
    net: Net,
    t: int,
    amount: float,
    *,
    account: str,
    loan_id: str | None,
    kinds: tuple[str, ...] = ("withdrawal",),
) -> list[tuple[int, str]]:
    """Move a disbursement out: all at once within minutes, or (stealthy) over hours."""
    rec = world.rec
    moves: list[tuple[int, str]] = []

    def move(at: int, piece: float) -> None:
        txn = rec.txn(
            actor,
            at,
            rng.choice(kinds),
            amount=piece,
            account=account,
            dev=dev,
            net=net,
            loan_id=loan_id,
            step="cash_out",
        )
        if txn is not None:
            moves.append((at, txn))

    if world.cfg.stealthy:
        pieces = rng.randint(2, 4)
        shares = [rng.uniform(0.6, 1.4) for _ in range(pieces)]
        t += rng.randrange(40 * MINUTE, 3 * HOUR)
        for i, share in enumerate(shares):
            if i:
                t += rng.randrange(HOUR, 8 * HOUR)
                rec.device(
                    actor, t - rng.randrange(30 * SECOND, 300 * SECOND), "app_open", dev, net
                )
            move(t, round(amount * share / sum(shares), -1))
        return moves
    t += rng.randrange(40 * SECOND, 12 * MINUTE)
    if rng.random() < 0.25:
        first = round(amount * rng.uniform(0.4, 0.7), -1)
        parts = [first, round(amount - first, 2)]
    else:
        parts = [amount]
    for i, piece in enumerate(parts):
        if i:
            t += rng.randrange(20 * SECOND, 4 * MINUTE)
        move(t, piece)
    return moves


def fraud_labels(
    world: World,
    rng: random.Random,
    user_id: str,
    t: int,
    *,
    application_id: str | None,
    cash_outs: list[tuple[int, str]],
    sources: tuple[str, ...],
    due: int | None = None,
    default_share: float = 0.25,
) -> int:
    """Labels as the business learns about a fraud: a complaint, chargeback or analyst
    verdict 2-10 days after, or only a default 30-60 days after the due date.

    Returns the time of the first label (or where it would have been).
    """
    rec = world.rec
    if due is not None and application_id is not None and rng.random() < default_share:
        at = due + rng.randrange(30, 61) * DAY + rng.randrange(DAY)
        rec.label(at, user_id, "application", application_id, "default", "collections")
        return at
    at = t + rng.randrange(2 * DAY, 10 * DAY)
    targets = ["user"]
    if application_id is not None:
        targets.append("application")
    if cash_outs:
        targets.append("transaction")
    target = rng.choice(targets)
    if target == "application":
        target_id: str | None = application_id
    elif target == "transaction":
        target_id = cash_outs[0][1]
    else:
        target_id = user_id
    rec.label(at, user_id, target, target_id, "fraud", rng.choice(sources))
    return at


# --------------------------------------------------------------------------- fraud


def device_farm(world: World, rng: random.Random, incident: str, size: int) -> None:
    """Many fresh identities on a few devices (often emulators or rooted), or all on one
    network, signing up and applying within hours, then cashing out."""
    stealthy = world.cfg.stealthy
    ids = world.ids
    city = pick_city(rng)
    _, clat, clon, _ = CITIES[city]
    flat, flon = jitter(rng, clat, clon, 0.05)
    ip = datacenter_ip(rng) if rng.random() < 0.4 else city_ip(rng, city)
    farm_net = Net(ip, ids.secret("wifi"), flat, flon)
    emulator_p, rooted_p = (0.15, 0.25) if stealthy else (0.6, 0.7)
    shared_net = rng.random() < 0.4
    if shared_net:
        # one network: every identity on its own cheap phone, all on the farm Wi-Fi
        devices = [
            _device(
                world,
                rng,
                emulator=False,
                rooted=rng.random() < rooted_p / 2,
                loan_apps=rng.randint(2, 6) if stealthy else rng.randint(5, 15),
            )
            for _ in range(size)
        ]
    else:
        per_device = rng.randint(1, 2) if stealthy else rng.randint(3, 8)
        count = max(1, math.ceil(size / per_device))
        devices = []
        for _ in range(count):
            emulator = rng.random() < emulator_p
            devices.append(
                _device(
                    world,
                    rng,
                    emulator=emulator,
                    rooted=emulator or rng.random() < rooted_p,
                    loan_apps=rng.randint(2, 6) if stealthy else rng.randint(8, 25),
                )
            )
    collector = ids.secret("account") if rng.random() < 0.4 else None
    rhythm = "honest" if stealthy else "fraud"
    span_days = 8 if stealthy else 3
    t0 = world.moment(rng, rng.randint(0, _latest_day(world, span_days)), rhythm)
    t_join = t0
    for k in range(size):
        if k:
            t_join += (
                rng.randrange(4 * HOUR, 36 * HOUR)
                if stealthy
                else rng.randrange(2 * MINUTE, 30 * MINUTE)
            )
        dev = devices[k if shared_net else k % len(devices)]
        young = rng.random() < 0.6
        person = _person(
            world,
            rng,
            city=city,
            age=(18, 22) if young else (45, 58),
            income=(2500, 6000),
            device=dev,
            home=farm_net,
        )
        person.bureau = None if rng.random() < 0.8 else float(rng.randint(420, 560))
        person.contacts = rng.randint(20, 120) if stealthy else rng.randint(2, 40)
        person.face_match = round(
            rng.uniform(0.8, 0.95) if stealthy else rng.uniform(0.55, 0.85), 3
        )
        person.channel = rng.choice(("referral", "ad_douyin", "ad_kuaishou"))
        actor = Actor(person.user_id, "device_farm", incident, True)
        net = _near(rng, farm_net, 0.001)
        if stealthy and rng.random() < 0.5:
            net = Net(mobile_ip(rng), None, net.lat, net.lon)
        if not shared_net and k >= len(devices):
            # the next identity on a used phone needs its own number: a SIM from the pool
            dev.sim_hash = ids.secret("sim")
            swap_at = t_join - rng.randrange(MINUTE, 5 * MINUTE)
            world.rec.device(actor, swap_at, "sim_change", dev, net, anonymous=True, step="sign_up")
        t = onboard(world, rng, actor, person, dev, t_join, net, step="sign_up")
        if stealthy:
            t_apply = t + rng.randrange(20 * HOUR, 3 * DAY)
            sessions(
                world,
                rng,
                actor,
                person,
                dev,
                t,
                t_apply,
                activity=0.7,
                net_fn=_around(net),
                login_fail=0.0,
            )
            amount = round_amount(rng.uniform(1000, 4000), 500, 4000)
            term = rng.choice((14, 30, 60, 90))
            income = rng.uniform(4000, 9000)
        else:
            t_apply = t + rng.randrange(3 * MINUTE, 40 * MINUTE)
            amount = round_amount(rng.uniform(3000, 10000), 500, 10000)
            term = rng.choice((7, 14, 30))
            income = rng.uniform(8000, 20000)
        liveness = stealthy or rng.random() > 0.15
        for attempt in range(2):
            app = world.rec.application(
                actor,
                t_apply,
                person,
                dev,
                net,
                amount=amount,
                product="cash_loan",
                term=term,
                income=income,
                liveness=liveness,
                step="application",
                rng=rng,
            )
            if app is None:
                break
            approved = liveness and rng.random() < (0.8 if stealthy else 0.7)
            if approved:
                t_disb = t_apply + lognormal_ms(rng, 6 * MINUTE, 0.6, MINUTE, HOUR)
                disb = world.rec.payout(
                    actor,
                    t_disb,
                    amount=amount,
                    account=person.card_hash,
                    loan_id=app,
                )
                if disb is None:
                    break
                kinds = ("transfer_out",) if collector else ("withdrawal",)
                moves = cash_out(
                    world,
                    rng,
                    actor,
                    dev,
                    net,
                    t_disb,
                    amount,
                    account=collector or person.card_hash,
                    loan_id=app,
                    kinds=kinds,
                )
                fraud_labels(
                    world,
                    rng,
                    person.user_id,
                    moves[-1][0] if moves else t_disb,
                    application_id=app,
                    cash_outs=moves,
                    sources=("analyst", "chargeback", "police_report"),
                    due=t_disb + term * DAY,
                )
                break
            if rng.random() < 0.3:
                world.rec.label(
                    t_apply + rng.randrange(2 * DAY, 10 * DAY),
                    person.user_id,
                    "application",
                    app,
                    "fraud",
                    "analyst",
                )
            if attempt or rng.random() > 0.4:
                break
            t_apply += rng.randrange(5 * MINUTE, 40 * MINUTE)
            amount = round_amount(amount * 0.6, 500, amount)


def account_takeover(
    world: World, rng: random.Random, incident: str, victim: Person, t_attack: int
) -> int:
    """An existing customer's account taken over: failed logins, a SIM change or a
    password reset, a new device, a new payout card, a quick loan moved out at once.

    Returns when the victim complains (the victim's own activity stops there).
    """
    stealthy = world.cfg.stealthy
    rec = world.rec
    actor = Actor(victim.user_id, "account_takeover", incident, True)
    dev = _device(
        world,
        rng,
        emulator=not stealthy and rng.random() < 0.2,
        rooted=rng.random() < (0.05 if stealthy else 0.5),
        loan_apps=rng.randint(1, 5) if stealthy else rng.randint(3, 12),
    )
    if stealthy:
        lat, lon = jitter(rng, victim.lat, victim.lon, 0.05)
        net = Net(city_ip(rng, victim.city), None, lat, lon)
    else:
        other = (victim.city + rng.randrange(1, len(CITIES))) % len(CITIES)
        lat, lon = jitter(rng, CITIES[other][1], CITIES[other][2], 0.05)
        ip = datacenter_ip(rng) if rng.random() < 0.4 else city_ip(rng, other)
        net = Net(ip, None, lat, lon)

    def gap(fast: tuple[int, int], slow: tuple[int, int]) -> int:
        return rng.randrange(*slow) if stealthy else rng.randrange(*fast)

    t = t_attack
    fails = rng.choice((0, 0, 1)) if stealthy else rng.randint(2, 6)
    for _ in range(fails):
        rec.device(actor, t, "login_failed", dev, net, step="login_failed")
        t += gap((8 * SECOND, 90 * SECOND), (10 * MINUTE, 2 * HOUR))
    u = rng.random()
    if stealthy:
        steps = ["password_reset"] if u < 0.7 else ["sim_change"]
    else:
        steps = (
            ["sim_change"]
            if u < 0.35
            else ["password_reset"]
            if u < 0.65
            else ["sim_change", "password_reset"]
        )
    for kind in steps:
        t += gap((30 * SECOND, 4 * MINUTE), (20 * MINUTE, 3 * HOUR))
        rec.device(actor, t, kind, dev, net, step=kind)
    t += gap((20 * SECOND, 3 * MINUTE), (10 * MINUTE, 2 * HOUR))
    rec.device(actor, t, "login", dev, net, step="new_device_login")
    rec.device(
        actor,
        t + rng.randrange(1 * SECOND, 5 * SECOND),
        "fingerprint",
        dev,
        net,
        step="new_device_login",
    )
    if stealthy:
        t_next = t + rng.randrange(3 * HOUR, 20 * HOUR)
        sessions(
            world,
            rng,
            actor,
            victim,
            dev,
            t + MINUTE,
            t_next,
            activity=1.0,
            net_fn=_around(net),
            login_fail=0.0,
        )
        t = t_next
    else:
        t += rng.randrange(1 * MINUTE, 8 * MINUTE)
    new_card = world.ids.secret("card")
    rec.txn(actor, t, "card_bind", amount=0.0, account=new_card, dev=dev, net=net, step="card_bind")
    t += gap((MINUTE, 10 * MINUTE), (2 * HOUR, 12 * HOUR))
    if stealthy:
        amount = round_amount(rng.uniform(1500, 5000), 500, 5000)
        face = rng.uniform(0.86, 0.95)
    else:
        amount = round_amount(rng.uniform(5000, 20000), 500, 20000)
        face = rng.uniform(0.6, 0.86)
    term = rng.choice((30, 60, 90))
    app = rec.application(
        actor,
        t,
        victim,
        dev,
        net,
        amount=amount,
        product="cash_loan",
        term=term,
        income=victim.income,
        card_hash=new_card,
        face_match=face,
        step="application",
        rng=rng,
    )
    end = t
    moves: list[tuple[int, str]] = []
    if app is not None and rng.random() < 0.85:
        t_disb = t + lognormal_ms(rng, 5 * MINUTE, 0.5, MINUTE, 40 * MINUTE)
        if rec.payout(
            actor,
            t_disb,
            amount=amount,
            account=new_card,
            loan_id=app,
        ):
            moves = cash_out(
                world,
                rng,
                actor,
                dev,
                net,
                t_disb,
                amount,
                account=new_card,
                loan_id=app,
                kinds=("withdrawal", "transfer_out"),
            )
            end = moves[-1][0] if moves else t_disb
    noticed = end + rng.randrange(2 * DAY, 10 * DAY)
    source = rng.choice(("customer_complaint", "chargeback"))
    if moves and rng.random() < 0.5:
        rec.label(noticed, victim.user_id, "transaction", moves[0][1], "fraud", source)
    elif app is not None and rng.random() < 0.4:
        rec.label(noticed, victim.user_id, "application", app, "fraud", source)
    else:
        rec.label(noticed, victim.user_id, "user", victim.user_id, "fraud", source)
    return noticed


def multi_lending(world: World, rng: random.Random, incident: str) -> None:
    """A real borrower who, after an ordinary start, fires a burst of applications across
    products within hours, with an inflated income and many lending apps on the phone,
    cashes out what is approved and never repays."""
    stealthy = world.cfg.stealthy
    rec = world.rec
    person = _person(world, rng)
    dev = person.device
    dev.loan_apps = rng.randint(3, 7)
    quiet = Actor(person.user_id, "multi_lending", incident, False)
    actor = quiet.as_fraud()
    earliest = min(world.days - 1, max(2, world.days // 3))
    burst_day = rng.randint(earliest, max(earliest, world.days - (5 if stealthy else 2)))
    t_burst = world.moment(rng, burst_day)
    existing = rng.random() < 0.6
    joined = None if existing else world.moment(rng, rng.randint(0, max(0, burst_day - 2)))
    t0 = world.start
    if joined is not None and joined < t_burst:
        t0 = onboard(world, rng, quiet, person, dev, joined, session_net(rng, person))
    sessions(world, rng, quiet, person, dev, t0, t_burst)
    if t_burst - t0 > 2 * DAY and rng.random() < 0.6:
        t_first = t0 + rng.randrange(HOUR, max(HOUR + 1, (t_burst - t0) // 2))
        honest_loan(
            world,
            rng,
            quiet,
            person,
            dev,
            t_first,
            product="cash_loan",
            retry=False,
            fate=draw_fate(rng, late=0.2, default=0.0),
            analyst_label=None,
        )
    inflation = rng.uniform(1.2, 1.6) if stealthy else rng.uniform(1.8, 4.0)
    count = rng.randint(3, 5) if stealthy else rng.randint(4, 10)
    span = rng.randrange(DAY, 3 * DAY) if stealthy else rng.randrange(HOUR, 6 * HOUR)
    dev.loan_apps = rng.randint(6, 10) if stealthy else rng.randint(12, 30)
    net = session_net(rng, person)
    rec.device(
        actor, t_burst - rng.randrange(1 * MINUTE, 10 * MINUTE), "login", dev, net, step="burst"
    )
    times = sorted(t_burst + rng.randrange(span) for _ in range(count))
    products = rng.sample(("cash_loan", "consumer_installment", "micro_business"), 3)
    first_label = None
    for i, t in enumerate(times):
        if stealthy:
            t = awake_after(rng, t)
        product = products[i % 3] if i < 3 or rng.random() < 0.7 else "cash_loan"
        if product == "micro_business":
            amount = round_amount(rng.uniform(10000, 50000), 5000, 100000, 1000)
        else:
            amount = round_amount(rng.uniform(3000, 20000 if not stealthy else 8000), 500, 20000)
        if stealthy:
            amount = round_amount(amount * 0.6, 500, amount)
        term = rng.choice((30, 60, 90)) if product == "cash_loan" else rng.choice((90, 180, 365))
        net = session_net(rng, person) if stealthy else net
        app = rec.application(
            actor,
            t,
            person,
            dev,
            net,
            amount=amount,
            product=product,
            term=term,
            income=person.income * inflation * rng.uniform(0.95, 1.1),
            step="application",
            rng=rng,
        )
        if app is None or rng.random() > 0.5:
            continue
        t_disb = t + lognormal_ms(rng, 10 * MINUTE, 0.7, MINUTE, 2 * HOUR)
        if not rec.payout(
            actor,
            t_disb,
            amount=amount,
            account=person.card_hash,
            loan_id=app,
        ):
            continue
        if stealthy:
            moves = cash_out(
                world, rng, actor, dev, net, t_disb, amount, account=person.card_hash, loan_id=app
            )
        else:
            t_out = t_disb + rng.randrange(5 * MINUTE, HOUR)
            txn = rec.txn(
                actor,
                t_out,
                "withdrawal",
                amount=amount,
                account=person.card_hash,
                dev=dev,
                net=net,
                loan_id=app,
                step="cash_out",
            )
            moves = [(t_out, txn)] if txn else []
        due = t_disb + (term if term <= 30 else 30) * DAY
        rec.label(
            due + rng.randrange(30, 61) * DAY,
            person.user_id,
            "application",
            app,
            "default",
            "collections",
        )
        if first_label is None and rng.random() < 0.4:
            first_label = fraud_labels(
                world,
                rng,
                person.user_id,
                moves[-1][0] if moves else t_disb,
                application_id=app,
                cash_outs=moves,
                sources=("analyst",),
                default_share=0.0,
            )
    sessions(world, rng, actor, person, dev, times[-1] + HOUR, world.end, activity=0.3)


def bust_out(world: World, rng: random.Random, incident: str, size: int) -> None:
    """A ring of clean-looking mule borrowers: a small loan repaid on time, then large
    loans disbursed to one account shared by the ring and moved out at once."""
    stealthy = world.cfg.stealthy
    rec = world.rec
    ids = world.ids
    city = pick_city(rng)
    shared = ids.secret("account")
    collector = ids.secret("account")
    grooming = rng.uniform(12, 18) if stealthy else rng.uniform(8, 13)
    spread = 6.0 if stealthy else 3.0
    latest = max(0.0, world.days - grooming - spread - 3)
    join0 = world.start + int(rng.uniform(0, min(latest, world.days * 0.25)) * DAY)
    big0 = join0 + int((spread + grooming) * DAY)
    big0 = min(big0, world.end - int((3 if stealthy else 1.5) * DAY))
    for k in range(size):
        person = _person(world, rng, city=city, age=(22, 40), income=(5000, 12000))
        dev = person.device
        dev.is_rooted = False
        dev.loan_apps = rng.randint(1, 4)
        clean = Actor(person.user_id, "bust_out", incident, False)
        actor = clean.as_fraud()
        t_join = awake_after(rng, join0 + int(rng.uniform(0, spread) * DAY))
        t = onboard(
            world, rng, clean, person, dev, t_join, session_net(rng, person), step="grooming"
        )
        t_big = big0 + (rng.randrange(3 * DAY) if stealthy else rng.randrange(6 * HOUR))
        if k == 0:
            t_big = big0
        if stealthy:
            t_bind = t_big - rng.randrange(DAY, 3 * DAY)
        else:
            t_bind = t_big - rng.randrange(2 * MINUTE, 20 * MINUTE)
        t_bind = max(t_bind, t + HOUR)
        activity = rng.uniform(0.4, 0.7)
        sessions(world, rng, clean, person, dev, t, t_bind, activity=activity)
        sessions(world, rng, actor, person, dev, t_bind, world.end, activity=activity)
        room_days = (t_big - t) / DAY
        if room_days > 4:
            small_term = 14 if room_days > 17 else 7
            t_small = awake_after(rng, t + rng.randrange(10 * MINUTE, DAY))
            amount = round_amount(rng.uniform(500, 2000), 500, 2000)
            app = rec.application(
                clean,
                t_small,
                person,
                dev,
                session_net(rng, person),
                amount=amount,
                product="cash_loan",
                term=small_term,
                income=person.income,
                step="grooming",
                rng=rng,
            )
            t_disb = t_small + lognormal_ms(rng, 8 * MINUTE, 0.6, MINUTE, HOUR)
            small = Loan(app, amount=amount, account=person.card_hash)
            if app is not None:
                small.disbursement_id = rec.payout(
                    clean,
                    t_disb,
                    amount=amount,
                    account=person.card_hash,
                    loan_id=app,
                    step="grooming",
                )
            if small.disbursement_id is not None:
                small.disbursed_at = t_disb
                use_funds(world, rng, clean, person, dev, small, "cash_loan")
                # repaid on time, and in any case well before the big loan
                due = t_disb + small_term * DAY
                need = max(0.0, (due - t_big) / DAY + 1.0)
                repay(
                    world,
                    rng,
                    clean,
                    person,
                    dev,
                    small,
                    small_term,
                    "on_time",
                    early=(need, need + 1.5),
                )
        net = session_net(rng, person)
        rec.device(
            actor, t_bind - rng.randrange(10 * SECOND, 60 * SECOND), "login", dev, net, step="bust"
        )
        rec.txn(
            actor,
            t_bind,
            "card_bind",
            amount=0.0,
            account=shared,
            dev=dev,
            net=net,
            step="card_bind",
        )
        amount = round_amount(
            rng.uniform(5000, 10000) if stealthy else rng.uniform(10000, 20000), 500, 20000
        )
        term = rng.choice((30, 60, 90))
        app = rec.application(
            actor,
            t_big,
            person,
            dev,
            net,
            amount=amount,
            product="cash_loan",
            term=term,
            income=person.income * rng.uniform(1.0, 1.3),
            card_hash=shared,
            step="application",
            rng=rng,
        )
        if app is None or rng.random() > 0.85:
            continue
        t_disb = t_big + lognormal_ms(rng, 6 * MINUTE, 0.6, MINUTE, HOUR)
        if not rec.payout(
            actor,
            t_disb,
            amount=amount,
            account=shared,
            loan_id=app,
        ):
            continue
        moves = cash_out(
            world,
            rng,
            actor,
            dev,
            net,
            t_disb,
            amount,
            account=collector,
            loan_id=app,
            kinds=("transfer_out",),
        )
        fraud_labels(
            world,
            rng,
            person.user_id,
            moves[-1][0] if moves else t_disb,
            application_id=app,
            cash_outs=moves,
            sources=("analyst", "collections"),
            due=t_disb + 30 * DAY,
            default_share=0.35,
        )


# ---------------------------------------------------------------------- look-alikes


def lookalike_family_phone(world: World, rng: random.Random, incident: str, size: int) -> None:
    """Two or three family members taking loans from one shared phone and home Wi-Fi."""
    first = _person(world, rng)
    dev = first.device
    dev.loan_apps = rng.randint(2, 6)
    members = [first] + [
        _person(world, rng, city=first.city, device=dev, home=first.home) for _ in range(size - 1)
    ]
    existing = rng.random() < 0.5
    for i, person in enumerate(members):
        actor = Actor(person.user_id, "lookalike_family_phone", incident, False)
        if i == 0:
            joined = None if existing else world.moment(rng, rng.randrange(max(1, world.days // 2)))
        else:
            joined = world.moment(rng, rng.randrange(world.days))
        honest_life(
            world,
            rng,
            actor,
            person,
            joined_at=joined,
            install=i == 0,
            borrow=0.6,
            loan_kwargs={"analyst_label": "false_positive"},
        )


def lookalike_campus(world: World, rng: random.Random, incident: str, size: int) -> None:
    """Students on one campus network (one public IP, a few Wi-Fis), each on their own
    phone, many signing up on the same promotion day; small loans, mostly repaid."""
    city = pick_city(rng)
    _, clat, clon, _ = CITIES[city]
    lat, lon = jitter(rng, clat, clon, 0.04)
    ip = city_ip(rng, city)
    wifis = [world.ids.secret("wifi") for _ in range(rng.randint(1, 3))]
    promo_day = rng.randrange(max(1, world.days - 2))
    for _ in range(size):
        dorm = Net(ip, rng.choice(wifis), *jitter(rng, lat, lon, 0.003))
        person = _person(
            world,
            rng,
            city=city,
            age=(18, 23),
            income=(1200, 3500),
            home=dorm,
            device=_device(world, rng, loan_apps=rng.randint(1, 4)),
        )
        person.channel = "referral" if rng.random() < 0.6 else "ad_douyin"
        person.contacts = rng.randint(60, 400)
        person.bureau = None if rng.random() < 0.7 else person.bureau
        actor = Actor(person.user_id, "lookalike_campus", incident, False)
        u = rng.random()
        if u < 0.5:
            joined: int | None = world.moment(rng, promo_day)
        elif u < 0.7:
            joined = None
        else:
            joined = world.moment(rng, rng.randrange(world.days))
        amount = round_amount(rng.uniform(500, 3000), 500, 3000)
        honest_life(
            world,
            rng,
            actor,
            person,
            joined_at=joined,
            borrow=0.6,
            loan_kwargs={
                "product": "cash_loan",
                "amount": amount,
                "term": rng.choice((7, 14, 30)),
                "fate": draw_fate(rng, late=0.15, default=0.05),
                "analyst_label": "false_positive",
            },
        )


def lookalike_new_phone_card(world: World, rng: random.Random, incident: str) -> None:
    """An existing customer buys a new phone (same SIM), then binds a new card of their
    own and may borrow: no failed logins, no SIM change, no password reset."""
    rec = world.rec
    person = _person(world, rng)
    actor = Actor(person.user_id, "lookalike_new_phone_card", incident, False)
    old = person.device
    first = min(2, world.days - 1)
    day = rng.randint(first, max(first, _latest_day(world, 2)))
    t_switch = world.moment(rng, day)
    sessions(world, rng, actor, person, old, world.start, t_switch, login_fail=0.0)
    t_last_old = world.moment(rng, day - 1) if day else world.start
    if t_last_old < t_switch:  # still on the old phone the day before
        rec.device(actor, t_last_old, "app_open", old, session_net(rng, person))
    new = _device(world, rng, sim_hash=old.sim_hash, loan_apps=old.loan_apps)
    person.device = new
    net = session_net(rng, person)
    t = onboard(world, rng, actor, person, new, t_switch, net, bind_card=False)
    t_bind = t + (
        rng.randrange(5 * MINUTE, 2 * HOUR)
        if rng.random() < 0.5
        else rng.randrange(2 * HOUR, 2 * DAY)
    )
    new_card = world.ids.secret("card")
    rec.txn(
        actor,
        awake_after(rng, t_bind),
        "card_bind",
        amount=0.0,
        account=new_card,
        dev=new,
        net=session_net(rng, person),
    )
    person.card_hash = new_card
    sessions(world, rng, actor, person, new, t, world.end, login_fail=0.0)
    if rng.random() < 0.6:
        u = rng.random()
        delay = (
            rng.randrange(10 * MINUTE, 2 * HOUR) if u < 0.3 else rng.randrange(2 * HOUR, 5 * DAY)
        )
        honest_loan(
            world,
            rng,
            actor,
            person,
            new,
            t_bind + delay,
            product="cash_loan",
            analyst_label="false_positive",
        )


def lookalike_emulator_tester(world: World, rng: random.Random, incident: str, size: int) -> None:
    """QA testers and tinkerers on emulators from one office: busy sessions, few small
    loans or none, each paid to their own card."""
    city = pick_city(rng)
    office = Net(
        city_ip(rng, city), world.ids.secret("wifi"), *jitter(rng, *CITIES[city][1:3], 0.03)
    )
    for _ in range(size):
        dev = _device(
            world, rng, emulator=True, rooted=rng.random() < 0.5, loan_apps=rng.randint(0, 2)
        )
        person = _person(
            world,
            rng,
            city=city,
            age=(22, 35),
            income=(9000, 25000),
            device=dev,
            home=Net(office.ip, office.wifi_hash, office.lat, office.lon),
        )
        actor = Actor(person.user_id, "lookalike_emulator_tester", incident, False)
        joined = world.moment(rng, rng.randrange(max(1, world.days // 3)))
        amount = round_amount(rng.uniform(500, 1000), 500, 1000)
        honest_life(
            world,
            rng,
            actor,
            person,
            joined_at=joined,
            borrow=0.4,
            session_kwargs={"activity": 0.85, "per_day": 2.0, "login_fail": 0.08},
            loan_kwargs={
                "product": "cash_loan",
                "amount": amount,
                "term": 7,
                "fate": "on_time",
                "analyst_label": "false_positive",
            },
        )

"""Behaviour shared by every kind of borrower: app sessions and the life of a loan.

A loan goes application -> (decline, maybe a retry after a pause) -> disbursement to
the borrower's card -> withdrawals or in-app payments over days -> repayments on the
schedule, sometimes late, sometimes never (a default, confirmed 30-60 days after the
due date by collections).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskmon.sim.clock import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    awake_after,
    lognormal_ms,
    time_in_day,
)
from riskmon.sim.config import SimConfig
from riskmon.sim.population import Device, Ids, Net, Person, session_net
from riskmon.sim.recorder import Actor, Recorder

PRODUCTS = (("cash_loan", 75), ("consumer_installment", 20), ("micro_business", 5))
CASH_TERMS = ((7, 12), (14, 15), (30, 30), (60, 13), (90, 15), (180, 10), (365, 5))
LONG_TERMS = ((90, 30), (180, 40), (365, 30))
DAILY_RATE = 0.0005  # simple interest per day, well under the legal cap


@dataclass
class World:
    """Everything a pattern needs: settings, the recorder, ids, shared counterparties."""

    cfg: SimConfig
    rec: Recorder
    ids: Ids
    merchants: list[str]

    @property
    def start(self) -> int:
        return self.cfg.start_ms

    @property
    def end(self) -> int:
        return self.cfg.end_ms

    @property
    def days(self) -> int:
        return self.cfg.days

    def day_start(self, t: int) -> int:
        return t - (t - self.start) % DAY

    def day_index(self, t: int) -> int:
        return (t - self.start) // DAY

    def moment(self, rng: random.Random, day: int, rhythm: str = "honest") -> int:
        """A time on window day ``day`` (clipped into the window), by daily rhythm."""
        day = min(max(day, 0), self.days - 1)
        return time_in_day(rng, self.start + day * DAY, rhythm)


@dataclass
class Loan:
    application_id: str | None
    amount: float = 0.0
    disbursed_at: int | None = None
    disbursement_id: str | None = None
    account: str = ""
    cash_outs: list[tuple[int, str]] = field(default_factory=list)
    last_repayment: int | None = None
    fully_repaid: bool = False
    defaulted: bool = False


def round_amount(value: float, lo: float, hi: float, step: float = 100.0) -> float:
    return float(min(hi, max(lo, round(value / step) * step)))


def draw_loan(rng: random.Random, product: str | None = None) -> tuple[str, float, int]:
    """(product, amount in CNY, term in days) of an ordinary app loan."""
    if product is None:
        product = rng.choices([p[0] for p in PRODUCTS], [p[1] for p in PRODUCTS])[0]
    if product == "cash_loan":
        amount = round_amount(3000 * math.exp(rng.gauss(0, 0.75)), 500, 20000)
        term = rng.choices([t[0] for t in CASH_TERMS], [t[1] for t in CASH_TERMS])[0]
    elif product == "consumer_installment":
        amount = round_amount(5000 * math.exp(rng.gauss(0, 0.6)), 1000, 30000)
        term = rng.choices([t[0] for t in LONG_TERMS], [t[1] for t in LONG_TERMS])[0]
    else:
        amount = round_amount(20000 * math.exp(rng.gauss(0, 0.6)), 5000, 100000, 1000)
        term = rng.choices([t[0] for t in LONG_TERMS], [t[1] for t in LONG_TERMS])[0]
    return product, amount, term


def sessions(
    world: World,
    rng: random.Random,
    actor: Actor,
    person: Person,
    dev: Device,
    t_from: int,
    t_to: int,
    *,
    activity: float | None = None,
    rhythm: str = "honest",
    net_fn: Callable[[random.Random], Net] | None = None,
    login_fail: float = 0.03,
    per_day: float = 1.0,
) -> None:
    """Everyday app use between two times: opens, logins, an occasional failed login."""
    activity = person.activity if activity is None else activity
    rec = world.rec
    first = max(0, world.day_index(t_from))
    last = min(world.days - 1, world.day_index(min(t_to, world.end) - 1))
    for day in range(first, last + 1):
        if rng.random() > activity:
            continue
        count = 1 + sum(rng.random() < p * per_day for p in (0.65, 0.35, 0.15))
        for _ in range(count):
            t = world.moment(rng, day, rhythm)
            if t < t_from or t >= t_to:
                continue
            net = net_fn(rng) if net_fn else session_net(rng, person)
            rec.device(actor, t, "app_open", dev, net)
            if rng.random() < 0.35:
                t_login = t + rng.randrange(3 * SECOND, 40 * SECOND)
                if rng.random() < login_fail:
                    rec.device(actor, t_login, "login_failed", dev, net)
                    t_login += rng.randrange(10 * SECOND, 90 * SECOND)
                rec.device(actor, t_login, "login", dev, net)
                if rng.random() < 0.25:
                    rec.device(
                        actor,
                        t_login + rng.randrange(1 * SECOND, 5 * SECOND),
                        "fingerprint",
                        dev,
                        net,
                    )


def onboard(
    world: World,
    rng: random.Random,
    actor: Actor,
    person: Person,
    dev: Device,
    t: int,
    net: Net,
    *,
    bind_card: bool = True,
    install: bool = True,
    step: str = "",
) -> int:
    """Install, sign up (first login), maybe bind the own card; returns the time after.

    ``install=False`` signs up on a phone that already has the app (a shared phone).
    """
    rec = world.rec
    if install:
        rec.device(actor, t, "install", dev, net, anonymous=True, step=step)
        t += rng.randrange(40 * SECOND, 600 * SECOND)
    else:
        rec.device(actor, t, "app_open", dev, net, step=step)
        t += rng.randrange(10 * SECOND, 120 * SECOND)
    rec.device(actor, t, "login", dev, net, step=step)
    t += rng.randrange(1 * SECOND, 5 * SECOND)
    rec.device(actor, t, "fingerprint", dev, net, step=step)
    if bind_card:
        t += rng.randrange(60 * SECOND, 900 * SECOND)
        rec.txn(
            actor, t, "card_bind", amount=0.0, account=person.card_hash, dev=dev, net=net, step=step
        )
    return t


def _first_cash_out_delay(rng: random.Random) -> int:
    """Honest borrowers: a quarter within the hour, most within the day, some days later."""
    u = rng.random()
    if u < 0.25:
        return rng.randrange(3 * MINUTE, HOUR)
    if u < 0.7:
        return rng.randrange(HOUR, 14 * HOUR)
    return rng.randrange(DAY, 5 * DAY)


def use_funds(
    world: World,
    rng: random.Random,
    actor: Actor,
    person: Person,
    dev: Device,
    loan: Loan,
    product: str,
) -> None:
    """Honest use of a disbursement: part withdrawn over days, or spent at merchants."""
    assert loan.disbursed_at is not None
    rec = world.rec
    t = loan.disbursed_at
    if product == "consumer_installment":
        remaining = loan.amount
        for _ in range(rng.randint(1, 4)):
            t = awake_after(rng, t + rng.randrange(20 * MINUTE, 4 * DAY))
            spend = round(min(remaining, loan.amount * rng.uniform(0.15, 0.6)), 2)
            if spend < 10:
                break
            remaining -= spend
            merchant = rng.choice(world.merchants)
            rec.txn(
                actor,
                t,
                "payment",
                amount=spend,
                account=merchant,
                dev=dev,
                net=session_net(rng, person),
                loan_id=loan.application_id,
            )
        return
    total = loan.amount * (1.0 if rng.random() < 0.45 else rng.uniform(0.5, 0.95))
    pieces = rng.choices((1, 2, 3), (55, 30, 15))[0]
    shares = [rng.uniform(0.5, 1.5) for _ in range(pieces)]
    t = awake_after(rng, t + _first_cash_out_delay(rng))
    for i, share in enumerate(shares):
        if i:
            t = awake_after(rng, t + rng.randrange(6 * HOUR, 6 * DAY))
        amount = round(total * share / sum(shares), -1)
        if amount <= 0:
            continue
        net = session_net(rng, person)
        if person.extra_accounts and rng.random() < 0.15:
            txn = rec.txn(
                actor,
                t,
                "transfer_out",
                amount=amount,
                account=person.extra_accounts[0],
                dev=dev,
                net=net,
                loan_id=loan.application_id,
            )
        else:
            txn = rec.txn(
                actor,
                t,
                "withdrawal",
                amount=amount,
                account=loan.account,
                dev=dev,
                net=net,
                loan_id=loan.application_id,
            )
        if txn is not None:
            loan.cash_outs.append((t, txn))


def repay(
    world: World,
    rng: random.Random,
    actor: Actor,
    person: Person,
    dev: Device,
    loan: Loan,
    term: int,
    fate: str,
    *,
    early: tuple[float, float] = (0.0, 3.0),
) -> None:
    """Repayments on the schedule. ``fate`` is ``on_time``, ``late`` or ``default``.

    A default stops paying at some installment; collections confirm it 30-60 days
    after that due date with a ``default`` label.
    """
    assert loan.disbursed_at is not None and loan.application_id is not None
    rec = world.rec
    installments = 1 if term <= 30 else max(1, term // 30)
    due_amount = round(loan.amount * (1 + DAILY_RATE * term) / installments, 2)

    def failed_debit(t: int, days_past_due: int) -> None:
        """An automatic debit of the installment that bounced."""
        rec.txn(
            actor,
            t,
            "repayment",
            amount=due_amount,
            account=loan.account,
            dev=None,
            net=None,
            loan_id=loan.application_id,
            status="failed",
            days_past_due=days_past_due,
        )

    default_at = rng.randrange(installments) if fate == "default" else -1
    late_at = rng.randrange(installments) if fate == "late" else -1
    t_prev = loan.disbursed_at
    for i in range(installments):
        due = loan.disbursed_at + int((i + 1) * term * DAY / installments)
        if due - 5 * DAY > world.end:
            return
        auto = rng.random() < 0.6
        pay_dev, pay_net = (None, None) if auto else (dev, session_net(rng, person))
        if i == default_at:
            loan.defaulted = True
            for dpd in (0, 7) if rng.random() < 0.6 else (0,):
                failed_debit(due + dpd * DAY + rng.randrange(HOUR), dpd)
            label_at = due + rng.randrange(30, 61) * DAY + rng.randrange(DAY)
            if loan.disbursed_at >= world.start:
                rec.label(
                    label_at,
                    actor.user_id,
                    "application",
                    loan.application_id,
                    "default",
                    "collections",
                )
            else:  # the application predates the window: collections name the borrower
                rec.label(label_at, actor.user_id, "user", actor.user_id, "default", "collections")
            return
        if i == late_at:
            failed_debit(due + rng.randrange(HOUR), 0)
            dpd = min(30, int(rng.expovariate(1 / 5)) + 1)
            t = awake_after(rng, due + dpd * DAY + rng.randrange(2 * HOUR, 20 * HOUR))
            rec.txn(
                actor,
                t,
                "repayment",
                amount=round(due_amount * (1 + 0.001 * dpd), 2),
                account=loan.account,
                dev=pay_dev,
                net=pay_net,
                loan_id=loan.application_id,
                days_past_due=dpd,
            )
        else:
            ahead = int(rng.uniform(*early) * DAY)
            t = max(t_prev + HOUR, due - ahead)
            if not auto:
                t = awake_after(rng, t)
            rec.txn(
                actor,
                t,
                "repayment",
                amount=due_amount,
                account=loan.account,
                dev=pay_dev,
                net=pay_net,
                loan_id=loan.application_id,
                days_past_due=0,
            )
        t_prev = t
        loan.last_repayment = t
    loan.fully_repaid = True
    if loan.last_repayment is not None and loan.disbursed_at >= world.start and rng.random() < 0.5:
        rec.label(
            loan.last_repayment + rng.randrange(HOUR, 2 * DAY),
            actor.user_id,
            "application",
            loan.application_id,
            "repaid",
            "servicing",
        )


def draw_fate(rng: random.Random, late: float = 0.1, default: float = 0.035) -> str:
    u = rng.random()
    return "default" if u < default else "late" if u < default + late else "on_time"


def honest_loan(
    world: World,
    rng: random.Random,
    actor: Actor,
    person: Person,
    dev: Device,
    t_apply: int,
    *,
    product: str | None = None,
    amount: float | None = None,
    term: int | None = None,
    fate: str | None = None,
    approve: float = 0.8,
    account: str | None = None,
    retry: bool = True,
    analyst_label: str | None = "legit",
) -> Loan:
    """One honest loan from application to the last repayment (or default)."""
    rec = world.rec
    drawn = draw_loan(rng, product)
    product = drawn[0]
    amount = drawn[1] if amount is None else amount
    term = drawn[2] if term is None else term
    account = account or person.card_hash
    t_apply = awake_after(rng, t_apply)
    net = session_net(rng, person)
    income = person.income * rng.uniform(0.9, 1.15)
    if person.bureau is not None and person.bureau < 520:
        approve *= 0.6
    rec.device(actor, t_apply - rng.randrange(20 * SECOND, 240 * SECOND), "app_open", dev, net)
    application_id = rec.application(
        actor,
        t_apply,
        person,
        dev,
        net,
        amount=amount,
        product=product,
        term=term,
        income=income,
        card_hash=account,
        rng=rng,
    )
    loan = Loan(application_id, account=account)
    if application_id is None:
        return loan
    if analyst_label is not None and rng.random() < 0.03:
        rec.label(
            t_apply + rng.randrange(2 * DAY, 10 * DAY),
            actor.user_id,
            "application",
            application_id,
            analyst_label,
            "analyst",
        )
    if rng.random() > approve:
        if retry and rng.random() < 0.5:
            pause = lognormal_ms(rng, 8 * HOUR, 1.0, 30 * MINUTE, 3 * DAY)
            smaller = round_amount(amount * rng.uniform(0.4, 0.8), 500, amount)
            return honest_loan(
                world,
                rng,
                actor,
                person,
                dev,
                t_apply + pause,
                product=product,
                amount=smaller,
                term=term,
                fate=fate,
                approve=0.75,
                account=account,
                retry=False,
                analyst_label=analyst_label,
            )
        return loan
    if rng.random() < 0.15:
        amount = round_amount(amount * rng.uniform(0.5, 0.9), 500, amount)
    t_disb = t_apply + lognormal_ms(rng, 8 * MINUTE, 0.8, MINUTE, 3 * HOUR)
    loan.amount = amount
    loan.disbursement_id = rec.payout(
        actor,
        t_disb,
        amount=amount,
        account=account,
        loan_id=application_id,
        step="",
    )
    if loan.disbursement_id is None:
        return loan
    loan.disbursed_at = t_disb
    use_funds(world, rng, actor, person, dev, loan, product)
    repay(world, rng, actor, person, dev, loan, term, fate or draw_fate(rng))
    return loan


def honest_life(
    world: World,
    rng: random.Random,
    actor: Actor,
    person: Person,
    *,
    joined_at: int | None,
    borrow: float | None = None,
    install: bool = True,
    loan_kwargs: dict[str, Any] | None = None,
    session_kwargs: dict[str, Any] | None = None,
) -> list[Loan]:
    """An honest user's month: sessions every few days and zero to a few loans.

    ``joined_at`` is the install time of a new user, ``None`` for an existing one
    (active before the window, card already bound).
    """
    dev = person.device
    kwargs: dict[str, Any] = dict(loan_kwargs or {})
    skw: dict[str, Any] = dict(session_kwargs or {})
    if joined_at is None:
        t0 = world.start
        borrow = 0.35 if borrow is None else borrow
        first_apply = world.moment(rng, rng.randrange(world.days))
        if rng.random() < 0.45:
            # a loan taken before the window, still being repaid
            product = kwargs.get("product")
            _, amount, term = draw_loan(rng, product if isinstance(product, str) else None)
            term = max(14, term)
            disbursed = world.start - rng.randrange(DAY, term * DAY)
            old = Loan(
                world.ids.new("a"), amount=amount, disbursed_at=disbursed, account=person.card_hash
            )
            repay(world, rng, actor, person, dev, old, term, draw_fate(rng))
    else:
        t0 = onboard(
            world, rng, actor, person, dev, joined_at, session_net(rng, person), install=install
        )
        borrow = 0.7 if borrow is None else borrow
        u = rng.random()
        if u < 0.4:
            first_apply = t0 + rng.randrange(2 * MINUTE, 40 * MINUTE)
        elif u < 0.75:
            first_apply = t0 + rng.randrange(HOUR, DAY)
        else:
            first_apply = t0 + rng.randrange(DAY, 6 * DAY)
    sessions(world, rng, actor, person, dev, t0, world.end, **skw)
    loans: list[Loan] = []
    if rng.random() < borrow:
        loan = honest_loan(world, rng, actor, person, dev, first_apply, **kwargs)
        loans.append(loan)
        if loan.fully_repaid and loan.last_repayment is not None and rng.random() < 0.45:
            again = loan.last_repayment + rng.randrange(HOUR, 10 * DAY)
            loans.append(honest_loan(world, rng, actor, person, dev, again, **kwargs))
    return loans

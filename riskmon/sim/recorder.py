"""Builds contract events together with their ground truth.

Patterns call the recorder with integer-millisecond times; it keeps activity inside
the simulated window (and inside an actor's own ``until``) and labels inside the
label tail. Event ids and final order are set later by the generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from riskmon.sim.population import Device, Ids, Net, Person

NEVER = 2**62
CASH_OUT_KINDS = ("withdrawal", "transfer_out")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and what the truth says about their events."""

    user_id: str
    pattern: str
    incident: str = ""
    is_fraud: bool = False
    until: int = NEVER

    def as_fraud(self, is_fraud: bool = True) -> Actor:
        return Actor(self.user_id, self.pattern, self.incident, is_fraud, self.until)


@dataclass(slots=True)
class SimEvent:
    ts: int
    seq: int
    payload: dict[str, Any]
    #: (is_fraud, pattern, incident, step, money_out); None for labels
    truth: tuple[bool, str, str, str, float] | None


class Recorder:
    def __init__(self, ids: Ids, start_ms: int, end_ms: int, label_end_ms: int) -> None:
        self.ids = ids
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.label_end_ms = label_end_ms
        self.events: list[SimEvent] = []
        self._seq = 0

    def _keep(self, actor: Actor | None, t: int) -> bool:
        if t < self.start_ms or t >= self.end_ms:
            return False
        return actor is None or t < actor.until

    def _add(self, t: int, payload: dict[str, Any], truth: Any) -> None:
        self._seq += 1
        self.events.append(SimEvent(t, self._seq, payload, truth))

    def device(
        self,
        actor: Actor,
        t: int,
        kind: str,
        dev: Device,
        net: Net,
        *,
        step: str = "",
        anonymous: bool = False,
    ) -> bool:
        """A telemetry event from the risk SDK; ``anonymous`` before login (user_id '')."""
        if not self._keep(actor, t):
            return False
        payload: dict[str, Any] = {
            "event_type": "device",
            "user_id": "" if anonymous else actor.user_id,
            "device_id": dev.device_id,
            "kind": kind,
            "ip": net.ip,
            "geo": {"lat": net.lat, "lon": net.lon},
            "os": dev.os,
            "os_version": dev.os_version,
            "app_version": dev.version_at(t),
            "is_emulator": dev.is_emulator,
            "is_rooted": dev.is_rooted,
            "sim_hash": dev.sim_hash,
        }
        if net.wifi_hash is not None:
            payload["wifi_hash"] = net.wifi_hash
        payload["loan_apps_installed"] = dev.loan_apps
        self._add(t, payload, (actor.is_fraud, actor.pattern, actor.incident, step, 0.0))
        return True

    def application(
        self,
        actor: Actor,
        t: int,
        person: Person,
        dev: Device,
        net: Net,
        *,
        amount: float,
        product: str,
        term: int,
        income: float,
        card_hash: str | None = None,
        face_match: float | None = None,
        liveness: bool = True,
        step: str = "",
        rng: random.Random | None = None,
    ) -> str | None:
        """A loan application; returns its application_id (``None`` if out of window)."""
        if not self._keep(actor, t):
            return None
        application_id = self.ids.new("a")
        face = person.face_match if face_match is None else face_match
        if rng is not None:
            face = min(1.0, max(0.0, face + rng.gauss(0, 0.01)))
        payload: dict[str, Any] = {
            "event_type": "application",
            "user_id": actor.user_id,
            "application_id": application_id,
            "device_id": dev.device_id,
            "ip": net.ip,
            "amount": float(amount),
            "term_days": int(term),
            "product": product,
            "declared_monthly_income": float(round(income, -2)),
            "phone_hash": person.phone_hash,
            "id_hash": person.id_hash,
            "bank_card_hash": card_hash or person.card_hash,
            "age": person.age,
            "geo": {"lat": net.lat, "lon": net.lon},
            "contacts_count": person.contacts,
            "channel": person.channel,
            "kyc": {
                "face_match_score": round(face, 3),
                "liveness_pass": liveness,
                "ocr_ok": True,
            },
            "bureau_score": person.bureau,
        }
        truth = (actor.is_fraud, actor.pattern, actor.incident, step, 0.0)
        self._add(t, payload, truth)
        return application_id

    def payout(
        self,
        actor: Actor,
        t: int,
        *,
        amount: float,
        account: str,
        loan_id: str | None,
        step: str = "disbursement",
    ) -> str | None:
        """A loan paid out to ``account``: a server-side disbursement, no device or
        network; returns its txn_id (``None`` if out of window)."""
        return self.txn(
            actor,
            t,
            "disbursement",
            amount=amount,
            account=account,
            dev=None,
            net=None,
            loan_id=loan_id,
            step=step,
        )

    def txn(
        self,
        actor: Actor,
        t: int,
        kind: str,
        *,
        amount: float,
        account: str,
        dev: Device | None,
        net: Net | None,
        loan_id: str | None = None,
        status: str = "success",
        days_past_due: int | None = None,
        step: str = "",
    ) -> str | None:
        """A money movement; returns its txn_id (``None`` if out of window)."""
        if not self._keep(actor, t):
            return None
        txn_id = self.ids.new("t")
        amount = round(float(amount), 2)
        payload: dict[str, Any] = {
            "event_type": "transaction",
            "user_id": actor.user_id,
            "txn_id": txn_id,
        }
        if loan_id is not None:
            payload["loan_id"] = loan_id
        payload.update(
            {
                "kind": kind,
                "amount": amount,
                "currency": "CNY",
                "status": status,
                "account_hash": account,
            }
        )
        if dev is not None:
            payload["device_id"] = dev.device_id
        if net is not None:
            payload["ip"] = net.ip
        if days_past_due is not None:
            payload["days_past_due"] = days_past_due
        money_out = amount if kind in CASH_OUT_KINDS and status == "success" else 0.0
        truth = (actor.is_fraud, actor.pattern, actor.incident, step, money_out)
        self._add(t, payload, truth)
        return txn_id

    def label(
        self,
        t: int,
        user_id: str,
        target_type: str,
        target_id: str | None,
        label: str,
        source: str,
    ) -> bool:
        """A delayed ground-truth label; dropped past the label tail or without a target."""
        if target_id is None or t < self.start_ms or t >= self.label_end_ms:
            return False
        payload = {
            "event_type": "label",
            "user_id": user_id,
            "target_type": target_type,
            "target_id": target_id,
            "label": label,
            "source": source,
        }
        self._add(t, payload, None)
        return True

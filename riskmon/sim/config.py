"""The simulator's settings: one frozen value per run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate.

    ``fraud_rate`` is the share of users touched by fraud (fraudulent identities plus
    taken-over accounts). ``label_tail_days`` is how long after the activity window
    delayed labels keep arriving (defaults are confirmed 30-60 days after the due date,
    so many arrive after the window).

    >>> SimConfig(seed=3).run_tag == SimConfig(seed=3).run_tag
    True
    >>> SimConfig(seed=3).run_tag == SimConfig(seed=4).run_tag
    False

    ``run_id`` names one run of the same traffic: its ids (users, devices, applications,
    transactions, hashed identifiers, event ids) are others, the traffic itself the
    same. Empty, the ids are those of the configuration alone.

    >>> SimConfig(seed=3).id_tag == SimConfig(seed=3).run_tag
    True
    >>> SimConfig(seed=3, run_id="a").id_tag == SimConfig(seed=3, run_id="b").id_tag
    False
    >>> SimConfig(users=0)
    Traceback (most recent call last):
    ...
    ValueError: users must be at least 1
    """

    seed: int = 1
    users: int = 1000
    days: int = 30
    fraud_rate: float = 0.03
    stealthy: bool = False
    start: datetime = field(default=DEFAULT_START)
    label_tail_days: int = 60
    lookalike_rate: float = 0.1
    run_id: str = ""

    def __post_init__(self) -> None:
        if self.users < 1:
            raise ValueError("users must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not 0.0 <= self.fraud_rate <= 0.5:
            raise ValueError("fraud_rate must be within [0, 0.5]")
        if not 0.0 <= self.lookalike_rate <= 0.5:
            raise ValueError("lookalike_rate must be within [0, 0.5]")
        if self.label_tail_days < 0:
            raise ValueError("label_tail_days must not be negative")
        if self.start.tzinfo is None or self.start.utcoffset() != UTC.utcoffset(None):
            raise ValueError("start must be an aware UTC datetime")

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * 86_400_000

    @property
    def label_end_ms(self) -> int:
        return self.end_ms + self.label_tail_days * 86_400_000

    @property
    def run_tag(self) -> str:
        """Short hex tag of this configuration; it keeps ids of different runs apart."""
        text = (
            f"{self.seed}|{self.users}|{self.days}|{self.fraud_rate!r}|{self.stealthy}|"
            f"{self.start_ms}|{self.label_tail_days}|{self.lookalike_rate!r}"
        )
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def id_tag(self) -> str:
        """Short hex tag the ids are made from: :attr:`run_tag`, or with a ``run_id`` a
        tag of both (the random draws stay those of :attr:`run_tag`)."""
        if not self.run_id:
            return self.run_tag
        return hashlib.sha256(f"{self.run_tag}|{self.run_id}".encode()).hexdigest()[:8]

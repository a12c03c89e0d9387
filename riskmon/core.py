"""The processing core: valid events in, decisions and actions out.

Plain Python with no Faust in it: the stream worker and the offline replay both call
:meth:`Core.process` on micro-batches, so a backtest means what production means.

>>> from riskmon.settings import Settings
>>> core = Core(Settings.load(config_file=None))
>>> out = core.process([{"event_id": "d1", "event_type": "device", "user_id": "u1",
...     "ts": "2026-11-28T09:00:00Z", "device_id": "d", "kind": "login"}], now=0.0)
>>> out.decisions[0]["decision"], out.decisions[0]["score"]
('pass', 0.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from riskmon.contract import Adjustment, Alert, Decision, format_ts
from riskmon.settings import Settings


@dataclass
class Outputs:
    """What one micro-batch produces, in the order the events came."""

    decisions: list[Decision] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    labels: int = 0
    duplicates: int = 0


class Core:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock

    def process(self, events: list[dict[str, Any]], now: float | None = None) -> Outputs:
        """Decide every non-label event of the batch; labels feed learning."""
        now = self.clock() if now is None else now
        out = Outputs()
        for event in events:
            if event["event_type"] == "label":
                out.labels += 1
                continue
            out.decisions.append(
                {
                    "source_event_id": event["event_id"],
                    "event_type": event["event_type"],
                    "user_id": event["user_id"],
                    "event_ts": event["ts"],
                    "ts": format_ts(now),
                    "score": 0.0,
                    "decision": "pass",
                    "reasons": [],
                    "model_scores": {},
                    "rule_ids": [],
                }
            )
        return out

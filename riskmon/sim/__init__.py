"""Simulated app-lending traffic with ground truth: honest borrowers, fraud patterns
(device farms, account takeover, multi-lending, bust-out) and honest look-alikes.

>>> events, truth = simulate(SimConfig(seed=1, users=20, days=2))
>>> len(truth) == sum(e["event_type"] != "label" for e in events)
True
"""

from riskmon.sim.config import SimConfig
from riskmon.sim.generator import iter_simulation, simulate

__all__ = ["SimConfig", "iter_simulation", "simulate"]

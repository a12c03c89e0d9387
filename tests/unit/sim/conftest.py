"""Small simulations shared by the simulator tests (kept small: the suite stays fast)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from riskmon.sim.config import SimConfig
from riskmon.sim.generator import simulate

CONTRACT = Path(__file__).resolve().parents[3] / "config" / "contract"

Run = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@pytest.fixture(scope="session")
def validators() -> dict[str, Any]:
    return {
        kind: jsonschema_rs.validator_for(
            json.loads((CONTRACT / f"{kind}.schema.json").read_text()), validate_formats=True
        )
        for kind in ("application", "device", "transaction", "label")
    }


@pytest.fixture(scope="session")
def default_run() -> Run:
    """800 users, 30 days, default fraud rate."""
    return simulate(SimConfig(seed=11, users=800, days=30))


@pytest.fixture(scope="session")
def fraud_heavy_run() -> Run:
    """More fraud, so that every pattern has several incidents."""
    return simulate(SimConfig(seed=12, users=700, days=30, fraud_rate=0.12))


@pytest.fixture(scope="session")
def stealthy_run() -> Run:
    return simulate(SimConfig(seed=12, users=700, days=30, fraud_rate=0.12, stealthy=True))

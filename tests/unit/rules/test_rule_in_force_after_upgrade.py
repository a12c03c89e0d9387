"""A rule in force keeps working after an upgrade that notes what it reads in vain:
reading an identifier its events never carry is a note, not a refusal."""

from __future__ import annotations

from typing import Any

from riskmon.core import Core
from riskmon.settings import Settings
from riskmon.store import MemoryStore

# the starter rule farm_one_network_shared_devices as every deployment published it
# (version 1, on risk.rules), here under a team's own rule id: on applications its
# Wi-Fi and SIM branches are 0, but its IP branch has fired all along
CROWDED_NETWORK_V1 = {
    "rule_id": "team_crowded_network",
    "version": 1,
    "applies_to": ["application"],
    "when": (
        "features.account_age_days <= 2"
        " && (features.wifi_users_1h >= 5 || features.ip_users_1h >= 5)"
        " && (features.device_users_24h >= 2 || features.sim_users_7d >= 2"
        " || features.is_rooted == 1)"
    ),
    "score": 0.55,
    "severity": "medium",
    "action": "review",
    "mode": "active",
    "reason": "New account applying from a crowded network.",
    "enabled": True,
}


def _app(k: int) -> dict[str, Any]:
    return {
        "event_id": f"a{k}",
        "event_type": "application",
        "user_id": f"u{k}",
        "ts": f"2026-11-01T10:0{k}:00.000Z",
        "application_id": f"app{k}",
        "device_id": "shared-device",
        "ip": "10.1.1.1",
        "amount": 500.0,
        "product": "cash_loan",
    }


def test_a_working_rule_with_a_branch_on_an_uncarried_identifier_still_applies() -> None:
    """A rule published before the upgrade, whose condition reads Wi-Fi and SIM
    features on applications (always 0 there) but holds through its IP branch, still
    loads and still flags five users applying from one IP within the hour."""
    core = Core.create(Settings.load(env={}, config_file=None), deterministic=True)
    core.apply_rule(CROWDED_NETWORK_V1)  # raises RuleError since never_carried
    store = MemoryStore()
    hits = [core.run_batch(store, [_app(k)], now=0.0).decisions[0]["rule_ids"] for k in range(5)]
    assert "team_crowded_network" in hits[-1]  # five users on one IP in the hour

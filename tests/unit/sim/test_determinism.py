"""The simulator is a pure function of its configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from riskmon.personal import ID_FIELDS
from riskmon.sim.config import SimConfig
from riskmon.sim.generator import simulate

REPO = Path(__file__).resolve().parents[3]


def _dump(cfg: SimConfig) -> bytes:
    events, truth = simulate(cfg)
    return b"\n".join(orjson.dumps(x) for x in [*events, *truth])


def test_same_seed_gives_byte_identical_files_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Two processes with different PYTHONHASHSEED write the same bytes for one seed."""
    outputs = []
    for hash_seed in ("0", "4242"):
        out, truth = tmp_path / f"ev-{hash_seed}.jsonl", tmp_path / f"tr-{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "riskmon.cli",
                "simulate",
                "--seed",
                "5",
                "--users",
                "150",
                "--days",
                "8",
                "--out",
                str(out),
                "--truth",
                str(truth),
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        outputs.append((out.read_bytes(), truth.read_bytes()))
    assert outputs[0][0] and outputs[0][1]
    assert outputs[0] == outputs[1]


def test_same_config_in_one_process_gives_the_same_output() -> None:
    cfg = SimConfig(seed=3, users=120, days=6, stealthy=True)
    assert _dump(cfg) == _dump(cfg)


def test_different_seed_gives_different_traffic_not_just_different_ids() -> None:
    a, _ = simulate(SimConfig(seed=3, users=120, days=6))
    b, _ = simulate(SimConfig(seed=4, users=120, days=6))
    amounts_a = [e["amount"] for e in a if e["event_type"] == "application"]
    amounts_b = [e["amount"] for e in b if e["event_type"] == "application"]
    assert amounts_a != amounts_b
    assert [e["ts"] for e in a[:50]] != [e["ts"] for e in b[:50]]


def test_ids_of_different_runs_do_not_collide() -> None:
    """Event ids are idempotency keys: two runs fed to one broker must not dedupe."""
    a, _ = simulate(SimConfig(seed=3, users=60, days=3))
    b, _ = simulate(SimConfig(seed=4, users=60, days=3))
    assert not {e["event_id"] for e in a} & {e["event_id"] for e in b}
    assert not ({e["user_id"] for e in a} - {""}) & ({e["user_id"] for e in b} - {""})


#: fields that name something (ids and hashed identifiers): a run id changes them
_NAMES = {
    *ID_FIELDS,
    "phone_hash",
    "id_hash",
    "bank_card_hash",
    "account_hash",
    "sim_hash",
    "wifi_hash",
}


def test_a_run_id_gives_the_same_traffic_under_ids_no_other_run_has() -> None:
    """Two runs of one seed with different run ids: the same events (types, times,
    amounts, places, verdicts) in the same order, but no event id, user, device,
    item or hashed identifier in common, so a store that has seen one run takes the
    other as new traffic; without a run id the output is the seed's as before."""
    base = SimConfig(seed=3, users=120, days=6, stealthy=True)
    a, truth_a = simulate(SimConfig(seed=3, users=120, days=6, stealthy=True, run_id="run-a"))
    b, _ = simulate(SimConfig(seed=3, users=120, days=6, stealthy=True, run_id="run-b"))
    assert [{k: v for k, v in e.items() if k not in _NAMES} for e in a] == [
        {k: v for k, v in e.items() if k not in _NAMES} for e in b
    ]
    for field in ("event_id", "user_id", "device_id", "txn_id", "phone_hash", "account_hash"):
        names_a = {e[field] for e in a if e.get(field)}
        names_b = {e[field] for e in b if e.get(field)}
        assert names_a and names_a.isdisjoint(names_b), field
    assert {r["event_id"] for r in truth_a} <= {e["event_id"] for e in a}
    assert simulate(base)[0][0]["event_id"].split("-")[1] == base.run_tag

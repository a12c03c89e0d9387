"""Rule evaluation cost per event: compiled closures versus the ``cel`` library.

Runs the starter rule set (rules/lending) on synthetic events carrying every catalogue
feature, and prints microseconds per event for:

- our compiled closures behind the RuleSet index (event type, then event.kind);
- our closures on every rule of the event type (no kind index);
- the ``cel`` library (dev dependency) on the same rules and activations: one
  ``cel.Context`` per event, each applicable program executed with it.

It also checks that both engines agree on every (rule, event) they both evaluate.

    .venv/bin/python bench/bench_rules.py [--events 2000] [--repeat 5] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from rules.engine import Rule, RuleSet, load_starter_rules
from rules.features import KNOWN_FEATURES, NEVER_MINUTES

EVENT_TYPES = ("application", "device", "transaction")
DEVICE_KINDS = ("install", "login", "login_failed", "app_open", "sim_change", "fingerprint")
TXN_KINDS = ("disbursement", "repayment", "withdrawal", "card_bind", "payment", "transfer_out")


def make_features(rng: random.Random) -> dict[str, float]:
    """Every catalogue feature, as a float, in a plausible range; some alarming."""
    feats: dict[str, float] = {}
    for name in sorted(KNOWN_FEATURES):
        if name.startswith("minutes_since_"):
            value = NEVER_MINUTES if rng.random() < 0.6 else rng.uniform(0, 5000)
        elif name.endswith(("_fraud_share", "outflow_share")):
            value = rng.random() * rng.choice((0.0, 0.2, 1.0))
        elif name.endswith("_ratio"):
            value = rng.lognormvariate(0, 0.8)
        elif name in ("is_emulator", "is_rooted", "payout_account_is_new"):
            value = float(rng.random() < 0.1)
        elif "_users_" in name or name.startswith("user_"):
            value = float(rng.choice((1, 1, 1, 2, 3, 5, 8)))
        elif name == "geo_speed_kmh":
            value = rng.choice((0.0, 30.0, 900.0, 2000.0))
        else:
            value = float(rng.randint(0, 30))
        feats[name] = value
    return feats


def make_event(rng: random.Random, event_type: str) -> dict[str, Any]:
    """An event with every field the rules may read present (cel has no missing-as-null)."""
    base: dict[str, Any] = {
        "event_id": f"e-{rng.randrange(10**9)}",
        "event_type": event_type,
        "ts": "2026-11-28T09:00:00.000Z",
        "user_id": f"u{rng.randrange(10**6)}",
        "device_id": "d-1",
        "ip": "36.112.4.9",
    }
    if event_type == "application":
        base.update(
            application_id="a-1",
            amount=float(rng.choice((500, 3000, 8000, 50000, 200000))),
            term_days=90,
            product="cash_loan",
            declared_monthly_income=float(rng.choice((3000, 6000, 12000))),
            age=rng.choice((17, 25, 31, 48)),
            kyc={
                "face_match_score": rng.random(),
                "liveness_pass": rng.random() < 0.9,
                "ocr_ok": True,
            },
        )
    elif event_type == "device":
        base.update(kind=rng.choice(DEVICE_KINDS), is_emulator=False, is_rooted=False)
    else:
        base.update(
            txn_id="t-1",
            kind=rng.choice(TXN_KINDS),
            amount=float(rng.choice((0, 500, 3000, 20000))),
            currency="CNY",
            status="success",
            account_hash="c-1",
        )
    return base


def best_of(repeat: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import cel

    rng = random.Random(args.seed)
    ruleset: RuleSet = load_starter_rules()
    workloads: dict[str, list[tuple[str, dict[str, Any], dict[str, float]]]] = {}
    for event_type in EVENT_TYPES:
        workloads[event_type] = [
            (event_type, make_event(rng, event_type), make_features(rng))
            for _ in range(args.events)
        ]
    mixed = [item for trio in zip(*workloads.values(), strict=True) for item in trio]
    workloads["mixed"] = mixed

    by_type: dict[str, tuple[Rule, ...]] = {
        t: tuple(r for r in ruleset.rules if t in r.applies_to) for t in EVENT_TYPES
    }
    programs = {r.rule_id: cel.compile(r.when) for r in ruleset.rules}

    def ours(items: list[Any]) -> Callable[[], None]:
        def run() -> None:
            evaluate = ruleset.evaluate
            for event_type, event, feats in items:
                evaluate(event_type, event, feats)

        return run

    def ours_type_index(items: list[Any]) -> Callable[[], None]:
        fns = {t: [r.predicate.fn for r in rules if r.predicate] for t, rules in by_type.items()}

        def run() -> None:
            failures = 0
            for event_type, event, feats in items:
                act = {"event": event, "features": feats}
                for fn in fns[event_type]:
                    try:
                        fn(act)
                    except Exception:
                        failures += 1

        return run

    def with_cel(items: list[Any]) -> Callable[[], None]:
        progs = {t: [programs[r.rule_id] for r in rules] for t, rules in by_type.items()}

        def run() -> None:
            failures = 0
            for event_type, event, feats in items:
                context = cel.Context(variables={"event": event, "features": feats})
                for program in progs[event_type]:
                    try:
                        program.execute(context)
                    except Exception:
                        failures += 1

        return run

    disagreements = 0
    compared = 0
    for event_type, event, feats in mixed:
        act = {"event": event, "features": feats}
        context = cel.Context(variables=act)
        for rule in by_type[event_type]:
            assert rule.predicate is not None
            try:
                mine: Any = rule.predicate.evaluate(act)
            except Exception:
                mine = "error"
            try:
                theirs: Any = programs[rule.rule_id].execute(context)
            except Exception:
                theirs = "error"
            compared += 1
            disagreements += mine != theirs

    header = (
        f"{'workload':<12} {'rules/event':>11} {'index':>9} {'type only':>10} "
        f"{'cel':>9} {'cel/index':>10}"
    )
    print(
        f"starter rules: {len(ruleset)}; features per event: {len(KNOWN_FEATURES)}; "
        f"events: {args.events} per type, {len(mixed)} mixed; best of {args.repeat}"
    )
    print("µs per event (index: RuleSet.evaluate, type/kind index; type only: closures of")
    print("every rule of the event type; cel: cel.Context per event + Program.execute)")
    print(header)
    print("-" * len(header))
    for name, items in workloads.items():
        n = len(items)
        per_event = sum(len(ruleset.rules_for(t, e.get("kind"))) for t, e, _ in items) / n
        t_index = best_of(args.repeat, ours(items)) / n * 1e6
        t_type = best_of(args.repeat, ours_type_index(items)) / n * 1e6
        t_cel = best_of(max(1, args.repeat // 2), with_cel(items)) / n * 1e6
        print(
            f"{name:<12} {per_event:>11.1f} {t_index:>9.2f} {t_type:>10.2f} "
            f"{t_cel:>9.1f} {t_cel / t_index:>9.0f}x"
        )
    print(f"agreement with cel: {compared - disagreements}/{compared} (rule, event) results equal")


if __name__ == "__main__":
    main()

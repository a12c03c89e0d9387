"""The evaluator's metric functions, on hand-made cases and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve

from riskmon.evaluate import (
    CashOut,
    Flag,
    average_precision,
    honest_flag_rate,
    money_caught_in_time,
    precision_recall_points,
    recall_at_budget,
)


def _random_case(seed: int, n: int = 300, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    y[0] = 1
    scores = rng.random(n) * 0.7 + 0.3 * y * rng.random(n)
    if ties:
        scores = np.round(scores, 1)  # many equal scores, as rule-based scores have
    return y, scores


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_scikit_learn(seed: int, ties: bool) -> None:
    y, scores = _random_case(seed, ties=ties)
    assert average_precision(y, scores) == pytest.approx(average_precision_score(y, scores))


@pytest.mark.parametrize("seed", range(4))
def test_precision_recall_points_match_scikit_learn_curve(seed: int) -> None:
    y, scores = _random_case(seed)
    precision, recall, thresholds = precision_recall_points(y, scores)
    sk_p, sk_r, sk_t = precision_recall_curve(y, scores)
    # scikit-learn lists thresholds ascending and appends the (precision 1, recall 0) end
    assert np.allclose(precision, sk_p[:-1][::-1])
    assert np.allclose(recall, sk_r[:-1][::-1])
    assert np.allclose(thresholds, sk_t[::-1])


def test_average_precision_of_a_perfect_and_of_an_inverted_ranking() -> None:
    assert average_precision([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert average_precision([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(
        average_precision_score([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])
    )


def test_average_precision_is_undefined_without_fraud() -> None:
    assert average_precision([0, 0, 0], [0.1, 0.5, 0.9]) is None
    assert recall_at_budget([0, 0, 0], [0.1, 0.5, 0.9], 0.5) is None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [0.01, 0.02, 0.1])
def test_recall_at_budget_matches_the_scikit_learn_curve_without_ties(
    seed: int, budget: float
) -> None:
    """Without ties, the top-k recall is the curve's recall at the k-th highest score."""
    y, scores = _random_case(seed, n=500, ties=False)
    k = int(np.ceil(budget * len(y)))
    kth = np.sort(scores)[::-1][k - 1]
    _, sk_recall, sk_thresholds = precision_recall_curve(y, scores)
    expected = sk_recall[np.flatnonzero(sk_thresholds == kth)[0]]
    assert recall_at_budget(y, scores, budget) == pytest.approx(expected)


def test_recall_at_budget_counts_ties_at_the_cut_fractionally() -> None:
    # budget 2 of 4 events: one event above the cut, then 1 slot among 3 tied (1 fraud)
    y = [0, 1, 0, 1]
    scores = [0.9, 0.5, 0.5, 0.5]
    assert recall_at_budget(y, scores, 0.5) == pytest.approx((0 + 2 * 1 / 3) / 2)
    # the result does not depend on the order of the input
    assert recall_at_budget(y[::-1], scores[::-1], 0.5) == recall_at_budget(y, scores, 0.5)


def test_recall_at_budget_keeps_at_least_one_event_and_rounds_up() -> None:
    y = [1] + [0] * 99
    scores = [0.99] + [0.1] * 99
    assert recall_at_budget(y, scores, 0.001) == 1.0  # ceil(0.1) = 1 event
    assert recall_at_budget([0, 1, 0], [0.9, 0.8, 0.1], 0.34) == 1.0  # ceil(1.02) = 2


def test_money_caught_in_time_on_a_hand_made_timeline() -> None:
    """Only a flag on the same user, strictly before the cash-out, catches it."""
    cash_outs = [
        CashOut("ato", (1_000, 10), 5_000.0, "account_takeover"),  # flagged before: caught
        CashOut("farm", (2_000, 20), 3_000.0, "device_farm"),  # flagged only after: missed
        CashOut("ring", (3_000, 30), 2_000.0, "bust_out"),  # only a neighbour flagged
        CashOut("same_ts", (4_000, 41), 1_000.0, "bust_out"),  # same ts, earlier in file
        CashOut("self", (5_000, 50), 500.0, "multi_lending"),  # flag on the cash-out itself
        CashOut("late_ts", (6_000, 60), 250.0, "multi_lending"),  # same ts, later in file
    ]
    flags = [
        Flag("ato", (900, 9)),
        Flag("farm", (2_500, 25)),
        Flag("ring_neighbour", (100, 1)),
        Flag("same_ts", (4_000, 40)),
        Flag("self", (5_000, 50)),
        Flag("late_ts", (6_000, 61)),
    ]
    result = money_caught_in_time(cash_outs, flags)
    overall = result["overall"]
    assert overall["fraud_money_out"] == 11_750.0
    assert overall["caught"] == 6_000.0
    assert overall["share"] == pytest.approx(6_000 / 11_750, abs=1e-6)
    assert (overall["cash_outs"], overall["cash_outs_caught"]) == (6, 2)
    by = result["by_pattern"]
    assert by["account_takeover"]["share"] == 1.0
    assert by["device_farm"]["share"] == 0.0
    assert by["bust_out"]["caught"] == 1_000.0
    assert by["multi_lending"]["caught"] == 0.0


def test_money_caught_in_time_uses_the_earliest_flag_of_a_user() -> None:
    outs = [CashOut("u", (50, 5), 100.0, "device_farm")]
    assert (
        money_caught_in_time(outs, [Flag("u", (90, 9)), Flag("u", (10, 1))])["overall"]["share"]
        == 1.0
    )


def test_money_caught_in_time_without_fraud_money_is_undefined() -> None:
    assert money_caught_in_time([], [Flag("u", (1, 1))]) == {
        "overall": {
            "fraud_money_out": 0.0,
            "caught": 0.0,
            "share": None,
            "cash_outs": 0,
            "cash_outs_caught": 0,
            "declined": 0.0,
            "declined_share": None,
        },
        "by_pattern": {},
        "by_link": {},
    }


def test_honest_flag_rate_counts_only_users_who_are_honest_throughout() -> None:
    rows = [
        {"user_id": "h1", "is_fraud": False, "pattern": "honest"},
        {"user_id": "h2", "is_fraud": False, "pattern": "honest"},
        {"user_id": "fam", "is_fraud": False, "pattern": "lookalike_family_phone"},
        {"user_id": "fam", "is_fraud": False, "pattern": "lookalike_family_phone"},
        {"user_id": "victim", "is_fraud": False, "pattern": "honest"},
        {"user_id": "victim", "is_fraud": True, "pattern": "account_takeover"},
        {"user_id": "", "is_fraud": False, "pattern": "honest"},
        {"user_id": "mule", "is_fraud": False, "pattern": "bust_out"},
        {"user_id": "mule", "is_fraud": True, "pattern": "bust_out"},
    ]
    result = honest_flag_rate(rows, ["h1", "fam", "victim", "mule", "stranger"])
    assert result["overall"] == {"users": 3, "flagged": 2, "rate": pytest.approx(2 / 3, abs=1e-6)}
    assert result["by_pattern"] == {
        "honest": {"users": 2, "flagged": 1, "rate": 0.5},
        "lookalike_family_phone": {"users": 1, "flagged": 1, "rate": 1.0},
    }

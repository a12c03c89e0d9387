"""The worker's metrics: series that alerts rely on exist before their first count."""

from __future__ import annotations

import pytest

from riskmon import metrics
from riskmon.contract import INPUT_CODES


def test_every_dead_letter_series_exists_at_zero_from_the_start() -> None:
    """Each input topic has a series per dead-letter code, and the rules topic one per
    code of its own, at 0 before anything is counted: a burst in a worker's first
    minute then shows in ``increase()``, which ignores a series' first sample."""
    metrics.start_dead_letter_counts(("t-metrics.loan.applications",), "t-metrics.risk.rules")

    def value(topic: str, code: str) -> float | None:
        labels = {"topic": topic, "code": code}
        return metrics.REGISTRY.get_sample_value("riskmon_deadletters_total", labels)

    for code in INPUT_CODES:
        assert value("t-metrics.loan.applications", code) == 0.0
    for code in ("rule_rejected", "rule_eval_error", "invalid_json"):
        assert value("t-metrics.risk.rules", code) == 0.0
    assert {
        "personal_data_in_clear",
        "processing_error",
        "unprocessable",
        "key_mismatch",
    } <= set(INPUT_CODES)


def test_rule_error_ids_are_bounded_and_the_rest_counted_as_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule ids come from whatever is published to the rules topic: past
    MAX_RULE_ERROR_IDS distinct ids, rejections still count, under ``other``, so a
    producer spraying broken rules cannot grow the metric's series without end; an id
    named before keeps its own series."""
    monkeypatch.setattr(metrics, "_rule_error_ids", set())  # as in a fresh process

    def series() -> dict[str, float]:
        return {
            sample.labels["rule_id"]: sample.value
            for metric in metrics.REGISTRY.collect()
            if metric.name == "riskmon_rule_errors"
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    before = series()
    n = metrics.MAX_RULE_ERROR_IDS
    labels = [metrics.count_rule_error(f"sprayed-{i}") for i in range(n + 5)]
    assert labels == [f"sprayed-{i}" for i in range(n)] + [metrics.OTHER_RULE_ID] * 5
    assert metrics.count_rule_error("sprayed-0") == "sprayed-0"
    after = series()
    assert set(after) - set(before) <= {*labels}
    assert len(set(after) - set(before)) <= n + 1
    assert after["sprayed-0"] == before.get("sprayed-0", 0.0) + 2
    assert after[metrics.OTHER_RULE_ID] == before.get(metrics.OTHER_RULE_ID, 0.0) + 5

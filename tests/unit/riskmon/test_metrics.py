"""The worker's metrics: series that alerts rely on exist before their first count."""

from __future__ import annotations

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
    assert {"personal_data_in_clear", "processing_error", "unprocessable"} <= set(INPUT_CODES)

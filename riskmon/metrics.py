"""Prometheus metrics of the pipeline, served by the worker at ``/metrics``.

Counters are incremented by the stream shell from what the core reports, so the
core itself stays free of process-global state.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# process_start_time_seconds among them: the alerts tell a worker's new series by it
ProcessCollector(registry=REGISTRY)

EVENTS = Counter(
    "riskmon_events_total",
    "Valid input events received, repeats included (riskmon_duplicate_events_total counts those; "
    "/health events leaves them out)",
    ["event_type"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "riskmon_deadletters_total",
    "Inputs sent to the dead-letter topic",
    ["topic", "code"],
    registry=REGISTRY,
)


def start_dead_letter_counts(inputs: Iterable[str], rules: str) -> None:
    """Make every series of ``riskmon_deadletters_total`` a worker can count exist at 0
    from its start: a series that first appears with a count of thousands (a burst just
    after a start) would go unseen by ``increase()``, and alerting on new series alerts
    on every restart of Prometheus instead."""
    from riskmon.contract import INPUT_CODES

    for topic in inputs:
        for code in INPUT_CODES:
            DEAD_LETTERS.labels(topic=topic, code=code)
    for code in ("rule_rejected", "rule_eval_error", *INPUT_CODES):
        DEAD_LETTERS.labels(topic=rules, code=code)


DECISIONS = Counter(
    "riskmon_decisions_total", "Decisions written", ["event_type", "decision"], registry=REGISTRY
)
ALERTS = Counter("riskmon_alerts_total", "Alerts written", ["severity"], registry=REGISTRY)
ADJUSTMENTS = Counter(
    "riskmon_adjustments_total", "Adjustments written", ["action"], registry=REGISTRY
)
RULE_HITS = Counter("riskmon_rule_hits_total", "Rule hits", ["rule_id", "mode"], registry=REGISTRY)
RULE_ERRORS = Counter(
    "riskmon_rule_errors_total",
    "Rules rejected or reverted (rule ids past the first MAX_RULE_ERROR_IDS under 'other')",
    ["rule_id"],
    registry=REGISTRY,
)
#: how many rule ids ``riskmon_rule_errors_total`` names, per process; the ids come from
#: whatever is published to the rules topic, and each new one would be a new series
MAX_RULE_ERROR_IDS = 100
OTHER_RULE_ID = "other"
_rule_error_ids: set[str] = set()


def count_rule_error(rule_id: str) -> str:
    """Count a rejected or reverted rule; returns the label it was counted under: its id,
    or ``other`` once :data:`MAX_RULE_ERROR_IDS` other ids have been counted.

    >>> count_rule_error("velocity_check")
    'velocity_check'
    """
    if rule_id not in _rule_error_ids:
        if len(_rule_error_ids) >= MAX_RULE_ERROR_IDS:
            rule_id = OTHER_RULE_ID
        else:
            _rule_error_ids.add(rule_id)
    RULE_ERRORS.labels(rule_id=rule_id).inc()
    return rule_id


DUPLICATES = Counter(
    "riskmon_duplicate_events_total", "Events seen before (same event_id)", registry=REGISTRY
)
DRIFTS = Counter("riskmon_drift_total", "Score drifts detected", ["stream"], registry=REGISTRY)
BATCH_SECONDS = Histogram(
    "riskmon_batch_seconds",
    "Time to process one micro-batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "riskmon_batch_stage_seconds",
    "Time per micro-batch in each stage: load (state from Redis), core (features, rules, "
    "models, decisions), profiles (the profiles to Redis, before the outputs), publish "
    "(outputs until the broker has them), save (the rest of the state to Redis)",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "riskmon_checkpoint_seconds",
    "Time per model checkpoint in each part: held (the models pickled; batches wait), "
    "compress, save (to Redis)",
    ["part"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
for _part in ("held", "compress", "save"):
    CHECKPOINT_SECONDS.labels(part=_part)
LAST_CHECKPOINT = Gauge(
    "riskmon_last_checkpoint_timestamp_seconds",
    "When the models were last checkpointed to Redis (0 until the worker's first)",
    registry=REGISTRY,
)
CHECKPOINT_BYTES = Gauge(
    "riskmon_checkpoint_bytes", "Size of the last model checkpoint saved", registry=REGISTRY
)
PENDING_VECTORS = Gauge(
    "riskmon_pending_vectors",
    "Scored feature vectors waiting for a label or maturity (at most "
    "detection.pending_max; the oldest are dropped past it)",
    registry=REGISTRY,
)
HELD_EVENTS = Gauge(
    "riskmon_held_events",
    "Events held back until the input partitions still catching up reach their event time",
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "riskmon_batch_events",
    "Events per micro-batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000),
    registry=REGISTRY,
)
EVENT_LAG = Gauge(
    "riskmon_event_time_lag_seconds",
    "Wall clock minus event time of the newest event of the last batch; 0 when the "
    "broker probe finds no input left unread",
    registry=REGISTRY,
)
LAST_BATCH = Gauge(
    "riskmon_last_batch_timestamp_seconds", "When the last batch finished", registry=REGISTRY
)
BATCH_FAILURES = Counter(
    "riskmon_batch_failures_total",
    "Attempts at a micro-batch that failed (Redis or Kafka); the batch is retried",
    registry=REGISTRY,
)
STATE_LOST = Counter(
    "riskmon_redis_state_lost_total",
    "Times a worker found that Redis had lost Riskmon's state (restarted empty, flushed "
    "or evicted): profiles, verdicts, freezes and features were forgotten",
    registry=REGISTRY,
)
FAILING = Gauge(
    "riskmon_failing",
    "1 while the worker's last attempt at a batch failed (it retries), else 0",
    registry=REGISTRY,
)
INPUT_LAG = Gauge(
    "riskmon_input_lag_messages",
    "Records on the broker the worker has not read yet, summed over the input partitions "
    "it owns, per topic (the broker probe, every worker.broker_check_s)",
    ["topic"],
    registry=REGISTRY,
)
REDIS_REACHABLE = Gauge(
    "riskmon_redis_reachable",
    "1 while Redis answers the worker's state check (every worker.state_check_s), 0 from "
    "its first failed check: a worker without traffic sees an outage there first",
    registry=REGISTRY,
)
CHECKPOINT_UNREADABLE = Gauge(
    "riskmon_checkpoint_unreadable",
    "1 when the worker found the model checkpoint unreadable at its start and started its "
    "models afresh (the checkpoint is kept aside, see the runbook), else 0",
    registry=REGISTRY,
)
REDIS_MAY_EVICT = Gauge(
    "riskmon_redis_may_evict",
    "1 when Redis's maxmemory-policy lets it drop keys (any but noeviction): Riskmon's "
    "state would go when memory runs short; 0 when it does not, or cannot be read",
    registry=REGISTRY,
)
RULES_FEED_OK = Gauge(
    "riskmon_rules_feed_ok",
    "1 once the worker has read the rules topic to its end, 0 from its start or a failure "
    "of the rule feed until it has read to the end again: rule versions published "
    "meanwhile do not judge this worker's events",
    registry=REGISTRY,
)
BROKER_REACHABLE = Gauge(
    "riskmon_broker_reachable",
    "1 while the broker answers the worker's probe, 0 from its first unanswered probe",
    registry=REGISTRY,
)

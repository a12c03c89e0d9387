"""One frozen settings object, built once at start and passed in.

Sources, highest priority first: keyword overrides, environment variables with the
``RISKMON_`` prefix (nested fields joined by ``__``), a YAML file, the defaults below.
The YAML file is ``$RISKMON_CONFIG`` when set, else ``config/riskmon.yaml`` when it
exists. No other module reads ``os.environ``.

>>> s = Settings.load(env={"RISKMON_KAFKA__PORT": "29092"}, config_file=None)
>>> s.kafka.bootstrap
'127.0.0.1:29092'
>>> s.topics.decisions
'risk.decisions'
>>> s.kafka.port = 1
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for KafkaSettings
...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = REPO_ROOT / "config" / "riskmon.yaml"
ENV_PREFIX = "RISKMON_"
#: RISKMON_* variables that are not settings: the settings file, the test switch
NOT_SETTINGS = frozenset({"RISKMON_CONFIG", "RISKMON_REQUIRE_STACK"})


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    """Where the broker is. The local stack starts it on ``host:port``."""

    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    partitions: int = Field(4, ge=1, description="partitions per topic created by Riskmon")
    replication_factor: int = Field(1, ge=1)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The broker URL in Faust's form."""
        return f"kafka://{self.bootstrap}"


class RedisSettings(_Frozen):
    """Where Redis is: one server, or any node of a Redis Cluster (``cluster: true``),
    from which the client learns the others."""

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)
    key_prefix: str = "rm:"
    cluster: bool = Field(False, description="host:port is a node of a Redis Cluster")

    @model_validator(mode="after")
    def _cluster_has_one_db(self) -> RedisSettings:
        if self.cluster and self.db != 0:
            raise ValueError("a Redis Cluster has only database 0; set redis.db to 0")
        return self

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


class TopicSettings(_Frozen):
    """Topic names; defaults follow the contract's README."""

    applications: str = "loan.applications"
    devices: str = "device.events"
    transactions: str = "loan.transactions"
    labels: str = "risk.labels"
    rules: str = "risk.rules"
    alerts: str = "risk.alerts"
    adjustments: str = "risk.adjustments"
    decisions: str = "risk.decisions"
    deadletter: str = "risk.deadletter"
    ops: str = "risk.ops"

    @property
    def inputs(self) -> dict[str, str]:
        """Input topic name -> the event_type its messages must carry."""
        return {
            self.applications: "application",
            self.devices: "device",
            self.transactions: "transaction",
            self.labels: "label",
        }

    @property
    def outputs(self) -> list[str]:
        return [self.alerts, self.adjustments, self.decisions, self.deadletter, self.ops]

    @property
    def all(self) -> list[str]:
        return [*self.inputs, self.rules, *self.outputs]


class WorkerSettings(_Frozen):
    app_id: str = "riskmon"
    batch_size: int = Field(500, ge=1, description="events per micro-batch at most")
    batch_within_s: float = Field(0.05, gt=0, description="longest wait to fill a batch")
    max_message_bytes: int = Field(64 * 1024, ge=256, description="larger inputs are dead")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535, description="Faust web: /metrics, /health")
    data_dir: str = Field(
        "riskmon-data",
        description="Faust's local state of this worker: one directory per worker process",
    )
    hold_max_events: int = Field(
        20_000,
        ge=0,
        description="events held back at most while an input partition catches up "
        "(0: no holding, events are decided in arrival order)",
    )
    hold_max_s: float = Field(
        5.0,
        ge=0,
        description="longest an event is held back after the partitions it waits for last "
        "delivered a record, counting only time the worker is free to take records in (not "
        "while it decides a batch); a partition catching up, delivering, holds it until it "
        "has passed the event's time",
    )
    start_wait_s: float = Field(
        120.0,
        ge=0,
        description="how long a starting worker waits for Redis before it exits with an error",
    )
    state_check_s: float = Field(
        5.0,
        gt=0,
        description="how often a worker checks that Redis still holds Riskmon's state "
        "(the state mark); a Redis that restarted empty is reported as redis_state_lost",
    )
    session_timeout_s: float = Field(
        15.0,
        ge=6,
        le=90,
        description="how long the consumer group waits for a worker that stopped "
        "answering (killed, host lost) before its partitions move to the others",
    )
    stop_timeout_s: float = Field(
        25.0,
        gt=0,
        description="how long a worker told to stop (SIGTERM, SIGINT) may take to finish "
        "its batch and commit before it exits with status 1 (nothing undecided is lost); "
        "below the supervisor's own grace (docker compose's stop_grace_period, 30 s, "
        "Kubernetes' terminationGracePeriodSeconds, 30 s by default)",
    )
    broker_check_s: float = Field(
        10.0,
        gt=0,
        description="how often a worker asks the broker, on a connection of its own, for "
        "the end of its input partitions: the input lag, and whether the broker answers",
    )
    broker_grace_s: float = Field(
        30.0,
        ge=0,
        description="how long the broker may go unanswered before /health says "
        "broker_unreachable (ok: false)",
    )


class Thresholds(_Frozen):
    """Score cut-offs, in [0, 1], for the decision on one event."""

    review: float = Field(0.5, ge=0, le=1)
    decline: float = Field(0.85, ge=0, le=1)
    alert: float = Field(0.7, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.review <= self.decline:
            raise ValueError("thresholds: review must not exceed decline")
        return self


class DetectionSettings(_Frozen):
    """Knobs of the detection core (features, models, alerts)."""

    rules_dir: str = str(REPO_ROOT / "rules" / "lending")
    feature_ttl_s: int = Field(14 * 86400, ge=60, description="state older than this expires")
    max_future_s: int = Field(
        600,
        ge=0,
        description="an event time more than this ahead of the clock is refused (ts_in_future)",
    )
    label_maturity_s: int = Field(30 * 86400, ge=0, description="unlabeled -> negative after")
    pending_ttl_s: int = Field(45 * 86400, ge=60, description="how long scored vectors wait")
    pending_max: int = Field(200_000, ge=1000)
    model_warmup: int = Field(500, ge=0, description="events before an unsupervised score counts")
    batch_refit_every: int = Field(5000, ge=100)
    reservoir_size: int = Field(4096, ge=100)
    alert_dedup_s: int = Field(3600, ge=0)
    adjustment_ttl_s: int = Field(7 * 86400, ge=60)
    verdict_ttl_s: int = Field(
        365 * 86400,
        ge=60,
        description="a confirmed fraudster's document and profile are kept this long after "
        "the user's last change, so that the verdict outlives a quiet spell (other users' "
        "expire with feature_ttl_s; a user with an account action in force is kept at "
        "least adjustment_ttl_s)",
    )
    checkpoint_every_s: float = Field(30.0, gt=0)
    classifier_lr: float = Field(0.01, gt=0, le=1, description="SGD step of the classifier")
    classifier_negative_rate: float = Field(
        0.02, gt=0, le=1, description="share of negatives the classifier learns"
    )
    unsupervised_weight: float = Field(
        0.4, ge=0, le=1, description="how much an anomaly alone adds to a model score"
    )
    seed: int = 7


class PrivacySettings(_Frozen):
    """Identifiers of people that must not arrive in clear."""

    refuse_in_clear: str = Field(
        "phone,id_number,bank_card",
        pattern=r"^((phone|id_number|bank_card)(,(phone|id_number|bank_card))*)?$",
        description="comma-separated shapes that make an input refused when a *_hash "
        "field, a field the contract does not define, or any object or list in the input "
        "holds one (riskmon/personal.py): a mobile number, an identity number with "
        "its check character, a card number with its Luhn digit. Fields named for one "
        "(phone, id_number, bank_card, ...) are refused whatever this says. Hashes written "
        "as decimal numbers take a card's shape by chance (about 1 in 10 of 16 to 19 "
        "digits starting with 2 to 6 or 9): leave bank_card out then",
    )

    refuse_in_ids: str = Field(
        "phone",
        pattern=r"^((phone|id_number|bank_card)(,(phone|id_number|bank_card))*)?$",
        description="comma-separated shapes that make an input refused when one of its "
        "ids (user_id, device_id, application_id, txn_id, loan_id, target_id, event_id) "
        "holds one: a deployment keyed by phone number would carry it into outputs, "
        "profiles, Redis keys and logs. Numeric ids of 16 to 19 digits take a card's or "
        "an identity number's shape by chance, so only the phone's is refused by default; "
        "empty: none",
    )

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(k for k in self.refuse_in_clear.split(",") if k)

    @property
    def id_kinds(self) -> frozenset[str]:
        return frozenset(k for k in self.refuse_in_ids.split(",") if k)


class Settings(_Frozen):
    env: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    contract_dir: str = str(REPO_ROOT / "config" / "contract")
    stack_dir: str = str(REPO_ROOT / ".stack")
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    thresholds: Thresholds = Thresholds()
    detection: DetectionSettings = DetectionSettings()
    privacy: PrivacySettings = PrivacySettings()

    @classmethod
    def load(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        config_file: str | Path | Literal["auto"] | None = "auto",
        **overrides: Any,
    ) -> Settings:
        """Build the settings once: defaults < YAML file < environment < overrides."""
        environ = dict(os.environ if env is None else env)
        data: dict[str, Any] = {}
        path: Path | None
        if config_file == "auto":
            given = environ.get(ENV_PREFIX + "CONFIG")
            path = Path(given) if given else DEFAULT_CONFIG_FILE
            if not given and not path.exists():
                path = None
        else:
            path = Path(config_file) if config_file is not None else None
        if path is not None:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: settings file must hold a mapping")
            _merge(data, loaded)
        _merge(data, _from_env(environ))
        _merge(data, overrides)
        return cls.model_validate(data)


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value

"""``riskmon rules publish``: the risk team's rule file reaches a running worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from riskmon.cli import main

RULE = {
    "rule_id": "big_loan_new_device",
    "version": 2,
    "applies_to": ["application"],
    "when": "event.amount > 5000 && features.minutes_since_new_device < 60",
    "score": 0.6,
    "severity": "high",
    "action": "review",
    "mode": "shadow",
    "reason": "A large loan from a device new to the user within the hour.",
    "enabled": True,
}


def test_a_published_rule_file_is_applied_by_a_running_worker(
    isolated: Any, start_worker: Any, tmp_path: Path
) -> None:
    """The command checks the file, sends the rule to the rules topic, and the worker
    runs it without a restart (its /health lists the rule at the published version); a
    file with a broken rule sends nothing."""
    worker = start_worker(isolated)
    broken = tmp_path / "broken.yaml"
    bad_rule = {**RULE, "when": RULE["when"].replace("minutes_since_new_device", "nope")}
    broken.write_text(yaml.safe_dump({"rules": [bad_rule]}))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"rules": [RULE]}))
    cfg = str(isolated.config_file)
    assert main(["--config", cfg, "rules", "publish", str(good), str(broken)]) == 1
    assert main(["--config", cfg, "rules", "publish", str(good)]) == 0
    deadline = time.monotonic() + 60
    rules: dict[str, int] = {}
    while time.monotonic() < deadline:
        health = worker.health()
        rules = health["rules"] if health else {}
        if "big_loan_new_device" in rules:
            break
        time.sleep(0.5)
    assert rules.get("big_loan_new_device") == 2, rules
    health = worker.health()
    assert health is not None and health["rules_applied"] >= 1
    assert health["rules_rejected"] == 0  # the broken file never reached the topic


def test_publishing_a_version_not_newer_than_the_topics_sends_nothing(
    isolated: Any, tmp_path: Path, capsys: Any
) -> None:
    """Workers ignore a version not newer than the one they run: publishing an older one
    (a rollback done by re-sending the old file), or the same version with another
    condition, is refused with how to roll back instead, and nothing is sent. The same
    rule sent again as it is changes nothing (a whole rule set published on every
    deploy), and the next version goes out. Partitions that retention emptied are read
    to their end, not waited for."""
    import asyncio

    from aiokafka import TopicPartition
    from aiokafka.admin import RecordsToDelete

    from riskmon.topics import connect_admin, read_all, topic_partitions

    cfg = str(isolated.config_file)
    settings = isolated.settings

    def publish(version: int, when: str = RULE["when"]) -> int:
        path = tmp_path / f"v{version}.yaml"
        path.write_text(yaml.safe_dump({"rules": [{**RULE, "version": version, "when": when}]}))
        return main(["--config", cfg, "rules", "publish", str(path)])

    def on_topic() -> list[bytes]:
        return asyncio.run(read_all(settings, settings.topics.rules))

    assert publish(3) == 0
    capsys.readouterr()
    assert publish(2) == 1
    assert publish(3, when="event.amount > 9000") == 1
    err = capsys.readouterr().err
    assert "v3 is on the topic already" in err and "as v4" in err
    assert "another content is on the topic" in err
    assert publish(3) == 0 and "on the topic already" in capsys.readouterr().out
    assert len(on_topic()) == 1

    async def truncate() -> None:  # what retention does to old records
        admin = await connect_admin(settings)
        try:
            count = (await topic_partitions(admin, [settings.topics.rules]))[settings.topics.rules]
            tps = [TopicPartition(settings.topics.rules, p) for p in range(count)]
            ends = {tp: RecordsToDelete(before_offset=-1) for tp in tps}
            await admin.delete_records(ends, timeout_ms=10_000)
        finally:
            await admin.close()

    asyncio.run(truncate())
    assert on_topic() == []
    assert publish(4) == 0 and len(on_topic()) == 1

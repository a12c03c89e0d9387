"""``riskmon label``: the risk team's verdict reaches a running worker and the approval
service's profile."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from riskmon.cli import main
from riskmon.store import RedisStore


def test_a_fraud_verdict_sent_from_the_command_line_shows_in_the_profile(
    isolated: Any, start_worker: Any
) -> None:
    """A user's login is decided; ``riskmon label fraud USER`` then makes the user's
    profile say ``confirmed_fraud``, and ``riskmon label false_positive USER`` takes it
    back: what the approval service reads follows the risk team's verdicts."""
    settings = isolated.settings
    start_worker(isolated)
    login = {
        "event_id": "lc-1",
        "event_type": "device",
        "ts": "2026-11-28T09:00:00.000Z",
        "user_id": "u-label",
        "device_id": "d1",
        "kind": "login",
    }

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topics.devices, orjson.dumps(login), key=b"u-label"
            )
        finally:
            await producer.stop()

    async def profile() -> dict[str, Any] | None:
        store = RedisStore.from_settings(settings)
        try:
            return await store.get_profile("user", "u-label")
        finally:
            await store.close()

    def wait_for(check: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        doc = None
        while time.monotonic() < deadline:
            doc = asyncio.run(profile())
            if doc is not None and check(doc):
                return doc
            time.sleep(0.5)
        raise AssertionError(f"profile never matched: {doc}")

    asyncio.run(produce())
    wait_for(lambda d: d["confirmed_fraud"] is False)
    cfg = str(isolated.config_file)
    assert main(["--config", cfg, "label", "fraud", "u-label", "--ts", "2026-11-28T10:00:00Z"]) == 0
    wait_for(lambda d: d["confirmed_fraud"] is True)
    undo = ["label", "false_positive", "u-label", "--ts", "2026-11-28T11:00:00Z"]
    assert main(["--config", cfg, *undo]) == 0
    wait_for(lambda d: d["confirmed_fraud"] is False and d["event_time"] > 1795860000)

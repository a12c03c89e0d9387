"""``riskmon label`` checks, on the real Redis, that the item a verdict names is one
Riskmon holds for the user, before anything is sent."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis

from riskmon.cli import main
from riskmon.store import user_keys
from riskmon.topics import read_all


def test_a_verdict_on_an_item_the_users_document_does_not_hold_is_refused(
    isolated: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's document (``P u:{u:<user_id>}``) holds transaction t-1: a fraud verdict
    on t-l (mistyped) is refused and nothing reaches the labels topic; one on t-1 is
    sent."""
    settings = isolated.settings
    client = redis.Redis(host=settings.redis.host, port=settings.redis.port)
    key = user_keys(settings.redis.key_prefix, "u-check")[0]
    client.set(key, orjson.dumps({"targets": {"transaction:t-1": ["device:d1"]}}), ex=600)
    try:
        cfg = str(isolated.config_file)
        base = ["--config", cfg, "label", "fraud", "u-check", "--ts", "2026-11-28T10:00:00Z"]
        assert main([*base, "--transaction", "t-l"]) == 1
        assert "Riskmon holds no transaction 't-l'" in capsys.readouterr().err
        assert asyncio.run(read_all(settings, settings.topics.labels)) == []
        assert main([*base, "--transaction", "t-1"]) == 0
        sent = asyncio.run(read_all(settings, settings.topics.labels))
        assert [orjson.loads(v)["target_id"] for v in sent] == ["t-1"]
    finally:
        client.delete(key)
        client.close()

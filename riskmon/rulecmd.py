"""``riskmon rules check|publish FILE...``: rule files for the live rule feed.

``check`` reads rule files (YAML, as in ``rules/lending/``) and checks every rule as a
worker will: against the contract's rule schema, and its condition compiled against the
features Riskmon computes. ``publish`` checks them, then sends each rule to the rules
topic (``risk.rules``) as one JSON object keyed by its ``rule_id``; every worker applies
a rule whose version is newer than the one it runs, without a restart. Nothing is sent
unless every rule of every file passes. A rule a worker still rejects (or one that fails
on an event and is reverted) goes to the dead-letter topic with the reason.

    riskmon rules check rules/lending/*.yaml
    riskmon rules publish my_rules.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson

from riskmon.contract import Contract, InvalidMessage
from riskmon.settings import Settings
from rules.engine import RuleError, load_rule, read_rules_file
from rules.features import KNOWN_FEATURES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "publish"))
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML rule files")


def checked_rules(
    files: list[Path], contract: Contract, max_bytes: int = 64 * 1024
) -> list[dict[str, Any]]:
    """Every rule of ``files``, in order, each checked as a worker checks it and for its
    size as one message (at most ``max_bytes``); the first bad one raises
    :class:`RuleError` naming its file and rule."""
    out: list[dict[str, Any]] = []
    seen: dict[tuple[Any, Any], Path] = {}
    for file in files:
        if not file.is_file():
            raise RuleError(f"{file}: no such file")
        for data in read_rules_file(file):
            rule = dict(data)
            name = f"{file}: rule {rule.get('rule_id')!r} v{rule.get('version')}"
            try:
                contract.check("rule", orjson.loads(orjson.dumps(rule)))  # as it will travel
                load_rule(rule, KNOWN_FEATURES)
            except InvalidMessage as exc:
                raise RuleError(f"{name}: {exc.reason}") from exc
            except RuleError as exc:
                raise RuleError(f"{file}: {exc}") from exc
            except TypeError as exc:  # orjson: a value JSON cannot carry
                raise RuleError(f"{name}: {exc}") from exc
            size = len(orjson.dumps(rule))
            if size > max_bytes:
                raise RuleError(f"{name}: {size} bytes as a message, limit {max_bytes}")
            key = (rule["rule_id"], rule["version"])
            if key in seen:
                raise RuleError(f"{name}: also defined in {seen[key]}")
            seen[key] = file
            out.append(rule)
    return out


async def publish(settings: Settings, rules: list[dict[str, Any]]) -> None:
    """Send each rule to the rules topic, keyed by its id; wait until the broker has all."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topics.rules, orjson.dumps(rule), key=str(rule["rule_id"]).encode()
            )
            for rule in rules
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        contract = Contract.load(settings.contract_dir)
        rules = checked_rules(args.files, contract, settings.worker.max_message_bytes)
    except RuleError as exc:
        print(f"riskmon rules: {exc}", file=sys.stderr)
        return 1
    for rule in rules:
        mode = rule.get("mode", "active")
        state = "retire" if rule.get("enabled") is False else mode
        print(f"ok  {rule['rule_id']} v{rule['version']} ({state})")
    if args.action == "publish":
        if not rules:
            print("riskmon rules: no rules to publish", file=sys.stderr)
            return 1
        asyncio.run(publish(settings, rules))
        print(f"published {len(rules)} rule(s) to {settings.topics.rules}")
    return 0

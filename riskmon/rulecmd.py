"""``riskmon rules check|publish FILE...``: rule files for the live rule feed.

``check`` reads rule files (YAML, as in ``rules/lending/``) and checks every rule as a
worker will: against the contract's rule schema, and its condition compiled against the
features Riskmon computes. ``publish`` checks them, then sends each rule to the rules
topic (``risk.rules``) as one JSON object keyed by its ``rule_id``; every worker applies
a rule whose version is newer than the one it runs, without a restart. Nothing is sent
unless every rule of every file passes, and each is newer than every version of it on the
topic (an older one would be ignored: to roll back, publish the old condition as a new
version). A rule a worker still rejects (or one that fails
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
from riskmon.topics import produce, read_all
from rules.engine import RuleError, load_rule_files
from rules.features import KNOWN_FEATURES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("check", "publish"))
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML rule files")


def checked_rules(
    files: list[Path], contract: Contract, max_bytes: int = 64 * 1024
) -> list[dict[str, Any]]:
    """Every rule of ``files``, in order, each checked as a worker checks it (as the JSON
    it travels as) and for its size as one message (at most ``max_bytes``); the first
    bad one raises :class:`RuleError` naming its file and rule."""
    for file in files:
        if not file.is_file():
            raise RuleError(f"{file}: no such file")
    out: list[dict[str, Any]] = []
    for file, rule in load_rule_files(files, KNOWN_FEATURES, name=str):
        name = f"{file}: rule {rule.get('rule_id')!r} v{rule.get('version')}"
        try:
            message = orjson.dumps(rule)
            contract.check("rule", orjson.loads(message))
        except InvalidMessage as exc:
            raise RuleError(f"{name}: {exc.reason}") from exc
        except TypeError as exc:  # orjson: a value JSON cannot carry
            raise RuleError(f"{name}: {exc}") from exc
        if len(message) > max_bytes:
            raise RuleError(f"{name}: {len(message)} bytes as a message, limit {max_bytes}")
        out.append(rule)
    return out


def stale(rules: list[dict[str, Any]], published: list[bytes]) -> list[str]:
    """Why each of ``rules`` that is not newer than every version of it already on the
    rules topic (``published``: its record values) would be ignored by the workers.

    >>> [why] = stale([{"rule_id": "r", "version": 2}], [b'{"rule_id": "r", "version": 3}'])
    >>> why.split(";")[0], why.endswith("publish the old condition as v4)")
    ("rule 'r' v2: v3 is on the topic already", True)
    >>> stale([{"rule_id": "r", "version": 4}], [b'{"rule_id": "r", "version": 3}', b"x"])
    []
    """
    newest: dict[str, int] = {}
    for value in published:
        try:
            data = orjson.loads(value)
            rule_id, version = data["rule_id"], data["version"]
        except Exception:  # not a rule: the workers dead-letter it
            continue
        if isinstance(rule_id, str) and type(version) is int:
            newest[rule_id] = max(version, newest.get(rule_id, version))
    out = []
    for rule in rules:
        top = newest.get(str(rule["rule_id"]))
        if top is not None and rule["version"] <= top:
            out.append(
                f"rule {rule['rule_id']!r} v{rule['version']}: v{top} is on the topic already; "
                f"workers only take a newer version (to roll back, publish the old condition "
                f"as v{top + 1})"
            )
    return out


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
        problems = stale(rules, asyncio.run(read_all(settings, settings.topics.rules)))
        if problems:
            for problem in problems:
                print(f"riskmon rules: {problem}", file=sys.stderr)
            print("riskmon rules: nothing published", file=sys.stderr)
            return 1
        records = [(str(rule["rule_id"]).encode(), orjson.dumps(rule)) for rule in rules]
        asyncio.run(produce(settings, settings.topics.rules, records))
        print(f"published {len(rules)} rule(s) to {settings.topics.rules}")
    return 0

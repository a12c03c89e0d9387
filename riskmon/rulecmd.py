"""``riskmon rules check|publish FILE...``: rule files for the live rule feed.

``check`` reads rule files (YAML, as in ``rules/lending/``) and checks every rule as a
worker will: against the contract's rule schema, and its condition compiled against the
features Riskmon computes. ``publish`` checks them, then sends each rule to the rules
topic (``risk.rules``) as one JSON object keyed by its ``rule_id``; every worker applies
a rule whose version is newer than the one it runs, without a restart. Nothing is sent
unless every rule of every file passes, and each is newer than every version of it on the
topic (an older one would be ignored: to roll back, publish the old condition as a new
version); a rule on the topic as it is already is left out. A rule a worker still
rejects (or one that fails on an event and is reverted) goes to the dead-letter topic
with the reason.

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
from riskmon.topics import TopicsError, produce, read_all
from rules.engine import RuleError, load_rule_files, rule_notes
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
    for file, rule in load_rule_files(files, KNOWN_FEATURES, contract=contract, name=str):
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


def already_published(
    rules: list[dict[str, Any]], published: list[bytes]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Split ``rules`` by what the rules topic holds already (``published``: its record
    values): the rules to send, and why any cannot be sent. A rule identical to one on
    the topic is left out (publishing a whole rule set again changes nothing); one of a
    version the topic has with another content, or older than the newest there, is
    refused: the workers take a rule only when its version is newer than the one they
    run (to roll back, publish the old condition as the next version).

    >>> on_topic = [b'{"rule_id": "r", "version": 3, "when": "true"}', b"not a rule"]
    >>> already_published([{"rule_id": "r", "version": 3, "when": "true"}], on_topic)
    ([], [])
    >>> send, why = already_published([{"rule_id": "r", "version": 2, "when": "x"}], on_topic)
    >>> send, why[0].split(";")[0], why[0].endswith("as v4)")
    ([], "rule 'r' v2: v3 is on the topic already", True)
    >>> already_published([{"rule_id": "r", "version": 4, "when": "x"}], on_topic)[0]
    [{'rule_id': 'r', 'version': 4, 'when': 'x'}]
    """
    newest: dict[str, int] = {}
    seen: dict[tuple[str, int], list[Any]] = {}
    for value in published:
        try:
            data = orjson.loads(value)
            rule_id, version = data["rule_id"], data["version"]
        except Exception:  # not a rule: the workers dead-letter it
            continue
        if isinstance(rule_id, str) and type(version) is int:
            newest[rule_id] = max(version, newest.get(rule_id, version))
            seen.setdefault((rule_id, version), []).append(data)
    send, problems = [], []
    for rule in rules:
        rule_id, version = str(rule["rule_id"]), rule["version"]
        same = seen.get((rule_id, version), [])
        if orjson.loads(orjson.dumps(rule)) in same:
            continue  # on the topic as it is
        top = newest.get(rule_id)
        if top is not None and version <= top:
            what = "another content" if same else f"v{top}"
            problems.append(
                f"rule {rule_id!r} v{version}: {what} is on the topic already; workers "
                f"only take a newer version (to roll back, publish the old condition as "
                f"v{top + 1})"
            )
            continue
        send.append(rule)
    return send, problems


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        contract = Contract.for_settings(settings)
        rules = checked_rules(args.files, contract, settings.worker.max_message_bytes)
    except RuleError as exc:
        print(f"riskmon rules: {exc}", file=sys.stderr)
        return 1
    for rule in rules:
        mode = rule.get("mode", "active")
        state = "retire" if rule.get("enabled") is False else mode
        print(f"ok  {rule['rule_id']} v{rule['version']} ({state})")
        for note in rule_notes(rule, contract):
            print(f"    note: {note}")
    if args.action == "publish":
        if not rules:
            print("riskmon rules: no rules to publish", file=sys.stderr)
            return 1
        try:
            on_topic = asyncio.run(read_all(settings, settings.topics.rules))
        except (TimeoutError, TopicsError) as exc:
            print(
                f"riskmon rules: could not read {settings.topics.rules}: {exc or 'timed out'}",
                file=sys.stderr,
            )
            return 1
        send, problems = already_published(rules, on_topic)
        if problems:
            for problem in problems:
                print(f"riskmon rules: {problem}", file=sys.stderr)
            print("riskmon rules: nothing published", file=sys.stderr)
            return 1
        for rule in rules:
            if rule not in send:
                print(f"on the topic already: {rule['rule_id']} v{rule['version']}")
        records = [(str(rule["rule_id"]).encode(), orjson.dumps(rule)) for rule in send]
        if records:
            asyncio.run(produce(settings, settings.topics.rules, records))
        print(f"published {len(records)} rule(s) to {settings.topics.rules}")
    return 0

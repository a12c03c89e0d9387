"""``riskmon tail``: print what arrives on Riskmon's output topics, one JSON per line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from typing import Any

import orjson
from aiokafka.errors import KafkaConnectionError, KafkaError

from riskmon.cli import unreachable
from riskmon.logs import REDACTED, is_personal, scrub
from riskmon.settings import Settings
from riskmon.topics import quiet_kafka_client

NAMES = ("alerts", "adjustments", "decisions", "deadletter", "ops")
#: what ``riskmon tail`` follows when no topic is named
DEFAULT = ("alerts", "adjustments")


def _name(text: str) -> str:
    if text not in NAMES:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(NAMES)}")
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "which",
        nargs="*",
        type=_name,  # not choices=: argparse would check an empty list against them
        metavar="{" + ",".join(NAMES) + "}",
        help=f"output topics to follow (default: {' '.join(DEFAULT)})",
    )
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="stop after N messages")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="print messages as they are, personal identifiers included (a dead letter "
        "carries its rejected input, which may hold an unhashed phone, id or card)",
    )


#: ``"<name>": "<text>"`` pairs of a JSON text that does not parse
_PAIR = re.compile(r'"([A-Za-z0-9_]+)"\s*:\s*"(?:[^"\\]|\\.)*"')


def _redact_text(text: str) -> str:
    """A JSON text with personal identifiers withheld; one that does not parse has its
    ``"*_hash": "..."`` pairs withheld where they can be found.

    >>> _redact_text('{"phone_hash": "13812345678", "n": 1}')
    '{"phone_hash":"[redacted]","n":1}'
    >>> _redact_text('{"id_hash": "110101199003074258", broken')
    '{"id_hash": "[redacted]", broken'
    """
    try:
        return orjson.dumps(scrub(orjson.loads(text))).decode()
    except orjson.JSONDecodeError:
        return _PAIR.sub(
            lambda m: f'"{m.group(1)}": "{REDACTED}"' if is_personal(m.group(1)) else m.group(0),
            text,
        )


def redact(value: bytes) -> str:
    """What ``riskmon tail`` prints of a message: personal identifiers withheld, also
    inside the rejected input a dead letter carries (``value``; ``value_b64``, input
    that was not UTF-8, is left out).

    >>> dead = {"code": "invalid_format", "value": '{"card_hash": "6222021234567890123"}',
    ...         "value_b64": None}
    >>> orjson.loads(redact(orjson.dumps(dead)))["value"]
    '{"card_hash":"[redacted]"}'
    """
    text = value.decode("utf-8", "replace")
    try:
        obj: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return _redact_text(text)
    obj = scrub(obj)
    if isinstance(obj, dict):
        if isinstance(obj.get("value"), str):
            obj["value"] = _redact_text(obj["value"])
        if obj.get("value_b64"):
            obj["value_b64"] = "[withheld: not UTF-8; riskmon tail --raw shows it]"
    return orjson.dumps(obj).decode()


async def _tail(
    settings: Settings, topics: list[str], beginning: bool, limit: int, raw: bool = False
) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if beginning else "latest",
        enable_auto_commit=False,
    )
    try:
        with quiet_kafka_client():  # no error line of its own per failed connection
            await consumer.start()
    except BaseException:
        await consumer.stop()  # closed, also when the broker did not answer
        raise
    seen = 0
    try:
        async for rec in consumer:
            text = rec.value.decode("utf-8", "replace") if raw else redact(rec.value)
            sys.stdout.write(f"{rec.topic}\t{text}\n")
            sys.stdout.flush()
            seen += 1
            if limit and seen >= limit:
                return
    finally:
        await consumer.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    topics = [getattr(settings.topics, name) for name in args.which or DEFAULT]
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_tail(settings, topics, args.from_beginning, args.limit, args.raw))
    except KafkaConnectionError as exc:
        print(
            f"riskmon tail: {unreachable('Kafka', settings.kafka.bootstrap, exc)}", file=sys.stderr
        )
        return 1
    except KafkaError as exc:
        print(f"riskmon tail: Kafka at {settings.kafka.bootstrap}: {exc}", file=sys.stderr)
        return 1
    return 0

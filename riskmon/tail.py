"""``riskmon tail``: print what arrives on Riskmon's output topics, one JSON per line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from riskmon.settings import Settings

NAMES = ("alerts", "adjustments", "decisions", "deadletter", "ops")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "which",
        nargs="*",
        choices=NAMES,
        default=["alerts", "adjustments"],
        help="output topics to follow (default: alerts adjustments)",
    )
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="stop after N messages")


async def _tail(settings: Settings, topics: list[str], beginning: bool, limit: int) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    try:
        async for rec in consumer:
            sys.stdout.write(f"{rec.topic}\t{rec.value.decode('utf-8', 'replace')}\n")
            sys.stdout.flush()
            seen += 1
            if limit and seen >= limit:
                return
    finally:
        await consumer.stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    topics = [getattr(settings.topics, name) for name in args.which]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(settings, topics, args.from_beginning, args.limit))
    return 0

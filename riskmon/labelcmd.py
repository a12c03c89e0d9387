"""``riskmon label VERDICT USER_ID``: the risk team's verdict on a user, an application or
a transaction, sent to the labels topic (``risk.labels``) as a contract-valid label.

The workers learn from it (the fraud classifier) and act on it: a ``fraud`` verdict makes
the user a confirmed fraudster (profile at once, applications and money-out declined);
``legit`` or ``false_positive`` on the user, or on what a fraud verdict named, takes it
back.

    riskmon label fraud u-4b84397e7887                      # the user
    riskmon label fraud u-4b84397e7887 --transaction tx-91  # one transaction of theirs
    riskmon label false_positive u-4b84397e7887 --source analyst
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

import orjson
from aiokafka.errors import KafkaConnectionError, KafkaError

from riskmon.cli import unreachable
from riskmon.contract import Contract, InvalidMessage, format_ts
from riskmon.settings import Settings
from riskmon.topics import quiet_kafka_client

VERDICTS = ("fraud", "legit", "false_positive", "default", "repaid")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("label", choices=VERDICTS, metavar="VERDICT", help=", ".join(VERDICTS))
    parser.add_argument("user_id")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--application", metavar="APPLICATION_ID", help="the verdict is on it")
    target.add_argument("--transaction", metavar="TXN_ID", help="the verdict is on it")
    parser.add_argument("--source", default="analyst", help="who says so (default: analyst)")
    parser.add_argument("--ts", help="event time, RFC 3339 (default: now)")


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send ``records`` to ``topic`` and wait until the broker has them all (``acks=all``);
    the producer is closed also when the broker does not answer."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    try:
        with quiet_kafka_client():  # no error line of its own per failed connection
            await producer.start()
        sent = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def label_event(args: argparse.Namespace, now: float) -> dict[str, Any]:
    """The label event the arguments describe."""
    if args.application is not None:  # an empty id is the contract's to refuse, not a
        target_type, target_id = "application", args.application  # verdict on the user
    elif args.transaction is not None:
        target_type, target_id = "transaction", args.transaction
    else:
        target_type, target_id = "user", args.user_id
    return {
        "event_id": f"label-{uuid.uuid4().hex}",
        "event_type": "label",
        "ts": args.ts or format_ts(now),
        "user_id": args.user_id,
        "target_type": target_type,
        "target_id": target_id,
        "label": args.label,
        "source": args.source,
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    event = label_event(args, time.time())
    for what in ("user_id", "target_id"):
        value = event[what]
        if not value.strip() or value != value.strip():
            print(
                f"riskmon label: {what} {value!r} is empty or has blanks around it", file=sys.stderr
            )
            return 2
    try:
        # as a worker will, with its clock: a time it would refuse is refused here
        not_after = time.time() + settings.detection.max_future_s
        Contract.for_settings(settings).parse(orjson.dumps(event), not_after=not_after)
    except InvalidMessage as exc:
        print(f"riskmon label: {exc.reason}", file=sys.stderr)
        return 2
    # the inputs are keyed by user
    record = (event["user_id"].encode(), orjson.dumps(event))
    kafka = settings.kafka.bootstrap
    try:
        asyncio.run(produce(settings, settings.topics.labels, [record]))
    except KafkaConnectionError as exc:
        print(f"riskmon label: {unreachable('Kafka', kafka, exc)}; nothing sent", file=sys.stderr)
        return 1
    except KafkaError as exc:  # e.g. no labels topic: not known to be sent
        print(
            f"riskmon label: Kafka at {kafka} did not take the label ({exc}); "
            "it may not have been sent",
            file=sys.stderr,
        )
        return 1
    print(
        f"sent {event['label']} on {event['target_type']} {event['target_id']} "
        f"(user {event['user_id']}) to {settings.topics.labels}: {event['event_id']}"
    )
    return 0

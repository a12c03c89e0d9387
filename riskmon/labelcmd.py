"""``riskmon label VERDICT USER_ID``: the risk team's verdict on a user, an application or
a transaction, sent to the labels topic (``risk.labels``) as a contract-valid label.

The workers learn from it (the fraud classifier) and act on it: a ``fraud`` verdict makes
the user a confirmed fraudster (profile at once, applications and money-out declined);
``legit`` or ``false_positive`` on the user, or on what a fraud verdict named, takes it
back.

    riskmon label fraud u-4b84397e7887                      # the user
    riskmon label fraud u-4b84397e7887 --transaction tx-91  # one transaction of theirs
    riskmon label false_positive u-4b84397e7887 --source analyst

A verdict on an application or a transaction is sent only when Riskmon holds that item
for the user: the user's document in Redis keeps the identifiers of the user's newest
applications and transactions (``targets``), and a worker takes a verdict on an item it
does not hold as a verdict on the user's standing (a mistyped id would make the user a
confirmed fraudster). Otherwise the command refuses, and sends nothing; ``--force``
sends without the check (for an item older than those kept, say). When Redis does not
answer, it refuses too: the item could not be checked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

import orjson
import redis
from aiokafka.errors import KafkaConnectionError, KafkaError

from riskmon.cli import unreachable
from riskmon.contract import Contract, InvalidMessage, format_ts
from riskmon.personal import clear_kind, has_digit_run
from riskmon.settings import Settings
from riskmon.store import RedisStore, user_keys
from riskmon.topics import produce

#: items a user's document keeps (riskmon.features: the newest, by kind:id)
MAX_ITEMS = 64
VERDICTS = ("fraud", "legit", "false_positive", "default", "repaid")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("label", choices=VERDICTS, metavar="VERDICT", help=", ".join(VERDICTS))
    parser.add_argument("user_id")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--application", metavar="APPLICATION_ID", help="the verdict is on it")
    target.add_argument("--transaction", metavar="TXN_ID", help="the verdict is on it")
    parser.add_argument("--source", default="analyst", help="who says so (default: analyst)")
    parser.add_argument("--ts", help="event time, RFC 3339 (default: now)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="send a verdict on an application or transaction even when Riskmon holds no "
        "such item for the user (older than the items it keeps, say): a worker then takes "
        "a fraud verdict on it as one on the user",
    )


async def user_document(settings: Settings, user_id: str) -> dict[str, Any] | None:
    """The user's state document in Redis (``P u:{u:<user_id>}``), or ``None``."""
    store = RedisStore.from_settings(settings)
    try:
        raw = await asyncio.to_thread(store.r.get, user_keys(store.p, user_id)[0])
    finally:
        await store.close()
    return None if raw is None else dict(orjson.loads(raw))


def item_problem(
    doc: dict[str, Any] | None, user_id: str, target_type: str, target_id: str
) -> str | None:
    """Why Riskmon holds no ``target_type`` ``target_id`` for the user whose document is
    ``doc``, or ``None`` when it does. Items are kept as ``kind:id`` (documents of the
    previous release keyed them by the bare id, which is taken too).

    >>> doc = {"targets": {"transaction:tx-91": ["device:d1"], "a-7": ["device:d1"]}}
    >>> item_problem(doc, "u1", "transaction", "tx-91") is None
    True
    >>> item_problem(doc, "u1", "application", "a-7") is None  # previous release
    True
    >>> item_problem(doc, "u1", "application", "tx-91").split(":")[0]
    "Riskmon holds no application 'tx-91' for user 'u1'"
    """
    if doc is None:
        return (
            f"Riskmon holds nothing on user {user_id!r} (no document in Redis: a mistyped "
            f"or unknown user, or one not seen for longer than its state is kept), so no "
            f"{target_type} {target_id!r} of theirs"
        )
    targets = doc.get("targets") or {}
    if f"{target_type}:{target_id}" in targets or target_id in targets:
        return None
    held = [key.split(":", 1)[1] for key in targets if key.startswith(f"{target_type}:")]
    newest = f"; the newest held: {', '.join(held[-5:][::-1])}" if held else ""
    return (
        f"Riskmon holds no {target_type} {target_id!r} for user {user_id!r}: it is not "
        f"among the {len(targets)} applications and transactions kept for the user (the "
        f"newest, {MAX_ITEMS} at most){newest}. Mistyped, another user's, older than those "
        "kept, or its event not in yet? A worker would take a verdict on it as one on the "
        "user's standing"
    )


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
    if has_digit_run(event["source"]) or clear_kind(event["source"]) is not None:
        # who says so travels with the label into logs: a number in it is withheld here
        print(
            "riskmon label: --source holds a run of digits that may be a phone, identity or "
            "card number (withheld: personal data); name the team or the analyst instead",
            file=sys.stderr,
        )
        return 2
    try:
        # as a worker will, with its clock: a time it would refuse is refused here
        not_after = time.time() + settings.detection.max_future_s
        Contract.for_settings(settings).parse(orjson.dumps(event), not_after=not_after)
    except InvalidMessage as exc:
        print(f"riskmon label: {exc.reason}", file=sys.stderr)
        return 2
    if event["target_type"] != "user" and not args.force:
        address = f"{settings.redis.host}:{settings.redis.port}"
        try:
            doc = asyncio.run(user_document(settings, event["user_id"]))
        except (redis.RedisError, OSError) as exc:
            why = (
                f"Redis at {address}: {exc}"
                if isinstance(exc, redis.RedisError)
                and not isinstance(exc, redis.ConnectionError | redis.TimeoutError)
                else unreachable("Redis", address, exc)
            )
            print(
                f"riskmon label: {why}; nothing sent: the {event['target_type']} could not "
                "be checked (--force sends without the check)",
                file=sys.stderr,
            )
            return 1
        problem = item_problem(doc, event["user_id"], event["target_type"], event["target_id"])
        if problem is not None:
            print(
                f"riskmon label: {problem}. Nothing sent; check the id, or send it anyway "
                "with --force",
                file=sys.stderr,
            )
            return 1
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

"""``riskmon evaluate``: score the monitor's decisions against the simulator's truth.

Inputs are the simulator's EVENTS and TRUTH files and a DECISIONS file (one decision
per input event, see ``decision.schema.json``). Reported:

* average precision per event type (event level: truth ``is_fraud`` against score);
* recall at a review budget: the share of all fraud events that rank among the top
  1% / 2% of events by score (ties split evenly), overall and per type;
* money caught in time: the share of fraudulent money moved out (truth ``money_out``
  of fraud events) that was preceded, in event time, by a flag (a ``review``,
  ``decline`` or ``alert`` decision) on the same user; overall and per pattern, and
  per pattern split by whether the user shares an identifier (device, IP, wifi, SIM,
  payout account or card, phone, id number) with another user anywhere in the events
  file. That is over all time, so it includes links made after a cash-out and chance
  reuse of an IP: an upper bound on what the features, which see 7 days of the past,
  can link. A flag is a warning in time: the money a review or an alert flagged may
  still have left unless someone acted on it. ``declined`` is the money Riskmon stopped
  itself: the cash-out's own decision was ``decline``;
* honest users flagged: users whose every truth row is honest (look-alikes
  included), and how many of them were ever flagged; overall and per pattern;
* counts.

Events with no decision count as score 0, not flagged. "Preceded" is by event time,
and for equal times by order in the EVENTS file; a flag on the cash-out itself does
not count.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from riskmon.contract import parse_ts
from riskmon.features import ident_keys
from riskmon.logs import get_logger

log = get_logger("riskmon.evaluate")

FLAG_DECISIONS = ("review", "decline", "alert")
SCORED_TYPES = ("application", "device", "transaction")
DEFAULT_BUDGETS = (0.01, 0.02)

Position = tuple[int, int]  # (event time in ms, index in the EVENTS file)


class CashOut(NamedTuple):
    user_id: str
    at: Position
    amount: float
    pattern: str
    linked: bool = True  # the user shares an identifier with another user (see evaluate)
    declined: bool = False  # the cash-out's own decision was decline: stopped, not let out


#: The two groups of :func:`money_caught_in_time`'s ``by_link``.
LINK_GROUPS = {True: "linked to other users", False: "linked to no other user"}


class Flag(NamedTuple):
    user_id: str
    at: Position


# ----------------------------------------------------------------------------- metrics


def precision_recall_points(
    y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score, highest score first.

    Returns ``(precision, recall, thresholds)``; empty arrays when there is no positive.

    >>> p, r, t = precision_recall_points([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    >>> [round(float(x), 3) for x in p], [float(x) for x in r], [float(x) for x in t]
    ([1.0, 0.5, 0.667, 0.5], [0.5, 0.5, 1.0, 1.0], [0.9, 0.8, 0.7, 0.1])
    """
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError("y_true and scores differ in length")
    if y.size == 0 or not y.any():
        empty = np.array([], dtype=np.float64)
        return empty, empty, empty
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_each]
    fps = last_of_each + 1 - tps
    return tps / (tps + fps), tps / tps[-1], s[last_of_each]


def average_precision(
    y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float | None:
    """Average precision, as scikit-learn's ``average_precision_score``:
    the sum over thresholds of (recall gained) x (precision there).

    ``None`` when there is no positive (undefined).

    >>> average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    0.8333333333333333
    >>> average_precision([0, 1], [0.5, 0.5])
    0.5
    >>> average_precision([0, 0], [0.3, 0.1]) is None
    True
    """
    precision, recall, _ = precision_recall_points(y_true, scores)
    if precision.size == 0:
        return None
    gained = np.diff(np.r_[0.0, recall])
    return float(np.sum(gained * precision))


def recall_at_budget(
    y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, budget: float
) -> float | None:
    """Share of the positives among the top ``budget`` fraction of events by score.

    The budget is ``ceil(budget * n)`` events (at least one). Events tied with the last
    one that fits share the remaining slots evenly, so the result does not depend on
    input order. ``None`` when there is no positive.

    >>> y = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    >>> recall_at_budget(y, [.9, .8, .1, .7, .1, .1, .1, .1, .1, .1], 0.2)
    0.5
    >>> recall_at_budget([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5], 0.5)
    0.5
    """
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    if positives == 0:
        return None
    if not 0 < budget <= 1:
        raise ValueError("budget must be within (0, 1]")
    k = min(y.size, max(1, math.ceil(round(budget * y.size, 9))))
    cut = np.sort(s)[::-1][k - 1]
    above = s > cut
    tied = s == cut
    slots = k - int(above.sum())
    caught = float(y[above].sum()) + float(y[tied].sum()) * slots / int(tied.sum())
    return caught / positives


def money_caught_in_time(cash_outs: Iterable[CashOut], flags: Iterable[Flag]) -> dict[str, Any]:
    """Share of fraudulent money moved out after the user had already been flagged.

    A cash-out counts as caught when the same user has a flag at an earlier position
    (event time, then order in the file); a flag after it, or on another user, does not.

    >>> outs = [CashOut("u1", (100, 5), 500.0, "account_takeover"),
    ...         CashOut("u2", (100, 6), 300.0, "device_farm")]
    >>> flags = [Flag("u1", (90, 3)), Flag("u2", (200, 9)), Flag("u3", (10, 1))]
    >>> r = money_caught_in_time(outs, flags)
    >>> r["overall"]["fraud_money_out"], r["overall"]["caught"], r["overall"]["share"]
    (800.0, 500.0, 0.625)
    >>> r["overall"]["cash_outs"], r["overall"]["cash_outs_caught"]
    (2, 1)
    >>> stopped = CashOut("u5", (100, 8), 100.0, "bust_out", declined=True)
    >>> money_caught_in_time([*outs, stopped], flags)["overall"]["declined"]
    100.0
    >>> r["by_pattern"]["device_farm"]["share"]
    0.0
    >>> lone = CashOut("u4", (100, 7), 200.0, "device_farm", linked=False)
    >>> r = money_caught_in_time([*outs, lone], [*flags, Flag("u4", (50, 2))])
    >>> {k: b["caught"] for k, b in r["by_link"]["device_farm"].items()}
    {'linked to other users': 0.0, 'linked to no other user': 200.0}
    """
    first_flag: dict[str, Position] = {}
    for flag in flags:
        seen = first_flag.get(flag.user_id)
        if seen is None or flag.at < seen:
            first_flag[flag.user_id] = flag.at
    # name -> [money out, caught, cash-outs, caught, money declined]
    totals: dict[str, list[float]] = {}
    for out in cash_outs:
        if out.amount <= 0:
            continue
        flagged_at = first_flag.get(out.user_id)
        caught = flagged_at is not None and flagged_at < out.at
        for name in ("", out.pattern, f"{out.pattern}\x00{out.linked}"):
            acc = totals.setdefault(name, [0.0, 0.0, 0, 0, 0.0])
            acc[0] += out.amount
            acc[2] += 1
            if caught:
                acc[1] += out.amount
                acc[3] += 1
            if out.declined:
                acc[4] += out.amount

    def bucket(name: str) -> dict[str, Any]:
        money, caught, n, n_caught, declined = totals.get(name, [0.0, 0.0, 0, 0, 0.0])
        return {
            "fraud_money_out": round(money, 2),
            "caught": round(caught, 2),
            "share": round(caught / money, 6) if money else None,
            "cash_outs": int(n),
            "cash_outs_caught": int(n_caught),
            "declined": round(declined, 2),
            "declined_share": round(declined / money, 6) if money else None,
        }

    patterns = sorted(name for name in totals if name and "\x00" not in name)
    return {
        "overall": bucket(""),
        "by_pattern": {name: bucket(name) for name in patterns},
        "by_link": {
            name: {group: bucket(f"{name}\x00{key}") for key, group in LINK_GROUPS.items()}
            for name in patterns
        },
    }


def honest_flag_rate(
    truth_rows: Iterable[Mapping[str, Any]], flagged_users: Iterable[str]
) -> dict[str, Any]:
    """Share of honest users ever flagged, overall and per pattern.

    A user is honest when every truth row of theirs has ``is_fraud`` false; their
    pattern is their look-alike pattern if they have one, else ``honest``. Rows with
    an empty user_id (before login) belong to nobody.

    >>> rows = [{"user_id": "a", "is_fraud": False, "pattern": "honest"},
    ...         {"user_id": "b", "is_fraud": False, "pattern": "lookalike_campus"},
    ...         {"user_id": "c", "is_fraud": False, "pattern": "honest"},
    ...         {"user_id": "c", "is_fraud": True, "pattern": "account_takeover"}]
    >>> r = honest_flag_rate(rows, ["b", "c"])
    >>> r["overall"]
    {'users': 2, 'flagged': 1, 'rate': 0.5}
    >>> r["by_pattern"]["lookalike_campus"]
    {'users': 1, 'flagged': 1, 'rate': 1.0}
    """
    honest: dict[str, bool] = {}
    pattern_of: dict[str, str] = {}
    for row in truth_rows:
        uid = row["user_id"]
        if not uid:
            continue
        honest[uid] = honest.get(uid, True) and not row["is_fraud"]
        if pattern_of.get(uid, "honest") == "honest":
            pattern_of[uid] = row["pattern"]
    flagged = set(flagged_users)
    tally: dict[str, list[int]] = {"": [0, 0]}  # pattern ("" = all) -> [users, flagged]
    for uid, is_honest in honest.items():
        if not is_honest:
            continue
        for name in ("", pattern_of[uid]):
            counts = tally.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += uid in flagged

    def bucket(name: str) -> dict[str, Any]:
        users, hit = tally[name]
        return {"users": users, "flagged": hit, "rate": round(hit / users, 6) if users else None}

    overall = bucket("")
    by_pattern = {name: bucket(name) for name in sorted(tally) if name}
    return {"overall": overall, "by_pattern": dict(sorted(by_pattern.items()))}


# ----------------------------------------------------------------------------- loading


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc


def _ts_ms(text: str) -> int:
    return round(parse_ts(text) * 1000)  # the worker's reading, lower-case t and z too


class Data(NamedTuple):
    event_type: np.ndarray  # str per scored event
    y: np.ndarray  # 1 if fraud
    score: np.ndarray
    pattern: list[str]
    report: dict[str, Any]


def evaluate(
    events_path: str | Path,
    truth_path: str | Path,
    decisions_path: str | Path,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
) -> Data:
    """Join the three files and compute every metric."""
    where: dict[str, tuple[str, Position]] = {}
    counts_by_type: dict[str, int] = {}
    labels = 0
    users_on: dict[str, set[str]] = {}  # identifier key -> users seen with it
    for index, ev in enumerate(iter_jsonl(events_path)):
        etype = ev.get("event_type", "?")
        counts_by_type[etype] = counts_by_type.get(etype, 0) + 1
        if etype == "label":
            labels += 1
            continue
        user = ev.get("user_id") or ""
        where[ev["event_id"]] = (user, (_ts_ms(ev["ts"]), index))
        if user and etype in SCORED_TYPES:
            for key in ident_keys(ev):
                users_on.setdefault(key, set()).add(user)
    linked = {u for users in users_on.values() if len(users) > 1 for u in users}

    decisions: dict[str, dict[str, Any]] = {}
    per_decision: dict[str, int] = {}
    duplicates = unmatched = 0
    for dec in iter_jsonl(decisions_path):
        source = dec.get("source_event_id")
        if source not in where:
            unmatched += 1
            continue
        if source in decisions:
            duplicates += 1
        decisions[source] = dec
    flags: list[Flag] = []
    flagged_users: list[str] = []
    for source, dec in decisions.items():
        per_decision[dec["decision"]] = per_decision.get(dec["decision"], 0) + 1
        if dec["decision"] in FLAG_DECISIONS:
            user_id, at = where[source]
            user_id = user_id or dec.get("user_id", "")
            if user_id:
                flags.append(Flag(user_id, at))
                flagged_users.append(user_id)

    truth_rows: list[dict[str, Any]] = []
    etypes: list[str] = []
    ys: list[int] = []
    scores: list[float] = []
    patterns: list[str] = []
    cash_outs: list[CashOut] = []
    missing = unknown_truth = 0
    for row in iter_jsonl(truth_path):
        eid = row["event_id"]
        if eid not in where:
            unknown_truth += 1
            continue
        user_id, at = where[eid]
        row["user_id"] = user_id
        truth_rows.append(row)
        decision = decisions.get(eid)
        if decision is None:
            missing += 1
        etypes.append(row["event_type"])
        ys.append(1 if row["is_fraud"] else 0)
        scores.append(float(decision["score"]) if decision is not None else 0.0)
        patterns.append(row["pattern"])
        if row["is_fraud"] and row.get("money_out", 0) > 0:
            amount = float(row["money_out"])
            declined = decision is not None and decision["decision"] == "decline"
            cash_outs.append(
                CashOut(user_id, at, amount, row["pattern"], user_id in linked, declined)
            )

    y = np.asarray(ys, dtype=np.int64)
    score = np.asarray(scores, dtype=np.float64)
    etype_arr = np.asarray(etypes, dtype=object)
    groups = {"overall": np.ones(y.size, dtype=bool)}
    for t in SCORED_TYPES:
        groups[t] = etype_arr == t

    fraud_users = sorted({r["user_id"] for r in truth_rows if r["is_fraud"] and r["user_id"]})
    report: dict[str, Any] = {
        "average_precision": {g: _r(average_precision(y[m], score[m])) for g, m in groups.items()},
        "recall_at_budget": {
            f"{b:g}": {g: _r(recall_at_budget(y[m], score[m], b)) for g, m in groups.items()}
            for b in budgets
        },
        "money_caught_in_time": money_caught_in_time(cash_outs, flags),
        "honest_flag_rate": honest_flag_rate(truth_rows, flagged_users),
        "counts": {
            "events": sum(counts_by_type.values()),
            "events_by_type": dict(sorted(counts_by_type.items())),
            "labels": labels,
            "truth_rows": len(truth_rows),
            "truth_rows_without_event": unknown_truth,
            "fraud_events": int(y.sum()),
            "fraud_events_by_type": {
                g: int(y[m].sum()) for g, m in groups.items() if g != "overall"
            },
            "scored_events_by_type": {g: int(m.sum()) for g, m in groups.items() if g != "overall"},
            "fraud_users": len(fraud_users),
            "decisions": len(decisions),
            "decisions_by_kind": dict(sorted(per_decision.items())),
            "decisions_duplicate": duplicates,
            "decisions_without_event": unmatched,
            "events_without_decision": missing,
            "flags": len(flags),
        },
        "flag_decisions": list(FLAG_DECISIONS),
        "budgets": list(budgets),
    }
    return Data(etype_arr, y, score, patterns, report)


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def format_report(report: Mapping[str, Any]) -> str:
    """A plain-text table of the report."""
    cols = ("overall", *SCORED_TYPES)
    c = report["counts"]
    lines = [
        f"events {c['events']:,}  (labels {c['labels']:,})  decisions {c['decisions']:,}  "
        f"events without decision {c['events_without_decision']:,}  "
        f"decisions without event {c['decisions_without_event']:,}",
        "",
        f"{'':<26}" + "".join(f"{col:>15}" for col in cols),
        f"{'average precision':<26}"
        + "".join(f"{_fmt(report['average_precision'][col]):>15}" for col in cols),
    ]
    for budget, row in report["recall_at_budget"].items():
        name = f"recall @ {100 * float(budget):g}% budget"
        lines.append(f"{name:<26}" + "".join(f"{_fmt(row[col], True):>15}" for col in cols))
    fraud_by_type = c["fraud_events_by_type"]
    scored_by_type = c["scored_events_by_type"]
    pairs = [(c["fraud_events"], c["truth_rows"])]
    pairs += [(fraud_by_type[t], scored_by_type[t]) for t in SCORED_TYPES]
    lines.append(
        f"{'fraud events / events':<26}" + "".join(f"{f'{a:,}/{b:,}':>15}" for a, b in pairs)
    )
    money = report["money_caught_in_time"]
    lines += [
        "",
        f"{'money caught in time':<28}{'caught CNY':>14}{'moved out CNY':>16}{'share':>9}"
        f"{'declined':>10}",
    ]
    for name, b in [("overall", money["overall"]), *money["by_pattern"].items()]:
        lines.append(
            f"  {name:<26}{b['caught']:>14,.0f}{b['fraud_money_out']:>16,.0f}"
            f"{_fmt(b['share'], True):>9}{_fmt(b.get('declined_share'), True):>10}"
        )
        split = money.get("by_link", {}).get(name, {})
        if split and all(g["fraud_money_out"] for g in split.values()):
            for group, g in split.items():
                lines.append(
                    f"    {group:<24}{g['caught']:>14,.0f}{g['fraud_money_out']:>16,.0f}"
                    f"{_fmt(g['share'], True):>9}"
                )
    honest = report["honest_flag_rate"]
    lines += ["", f"{'honest users flagged':<28}{'flagged':>14}{'users':>16}{'rate':>9}"]
    for name, b in [("overall", honest["overall"]), *honest["by_pattern"].items()]:
        lines.append(f"  {name:<26}{b['flagged']:>14,}{b['users']:>16,}{_fmt(b['rate'], True):>9}")
    return "\n".join(lines)


def plot(data: Data, path: str | Path) -> None:
    """Precision-recall curves per event type, and score histograms honest vs fraud."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_pr, ax_hist) = plt.subplots(1, 2, figsize=(12, 5))
    for name in ("overall", *SCORED_TYPES):
        mask = np.ones(data.y.size, bool) if name == "overall" else data.event_type == name
        precision, recall, _ = precision_recall_points(data.y[mask], data.score[mask])
        if precision.size == 0:
            continue
        ap = data.report["average_precision"][name]
        ax_pr.step(
            np.r_[0.0, recall],
            np.r_[1.0, precision],
            where="post",
            label=f"{name} (AP {ap:.3f})",
            lw=2 if name == "overall" else 1.2,
        )
    ax_pr.set_xlabel("recall")
    ax_pr.set_ylabel("precision")
    ax_pr.set_xlim(0, 1)
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_title("precision-recall per event type")
    ax_pr.legend(loc="upper right", fontsize=8)
    bins = np.linspace(0, 1, 41)
    for label, mask, color in (
        ("honest", data.y == 0, "tab:blue"),
        ("fraud", data.y == 1, "tab:red"),
    ):
        if mask.any():
            ax_hist.hist(
                data.score[mask],
                bins=bins,
                density=True,
                alpha=0.55,
                color=color,
                label=f"{label} ({int(mask.sum()):,} events)",
            )
    ax_hist.set_yscale("log")
    ax_hist.set_xlabel("score")
    ax_hist.set_ylabel("density (log)")
    ax_hist.set_title("score distribution")
    ax_hist.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI


def _budget(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("a budget is a fraction within (0, 1]")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", metavar="EVENTS", help="the simulator's events (JSONL)")
    parser.add_argument("truth", metavar="TRUTH", help="the simulator's truth (JSONL)")
    parser.add_argument("decisions", metavar="DECISIONS", help="the monitor's decisions (JSONL)")
    parser.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="draw PR curves and score histograms")
    parser.add_argument(
        "--budgets",
        type=_budget,
        nargs="+",
        default=list(DEFAULT_BUDGETS),
        help="review budgets as fractions of events (default 0.01 0.02)",
    )


def run(args: argparse.Namespace, settings: Any) -> int:
    for path in (args.events, args.truth, args.decisions):
        if not Path(path).is_file():
            print(f"riskmon evaluate: no such file: {path}", file=sys.stderr)
            return 2
    try:
        data = evaluate(args.events, args.truth, args.decisions, budgets=args.budgets)
    except KeyError as exc:
        print(
            f"riskmon evaluate: a line without the field {exc}: are EVENTS, TRUTH and "
            "DECISIONS the simulator's events, its truth and the decisions, in that order?",
            file=sys.stderr,
        )
        return 2
    except ValueError as exc:
        print(f"riskmon evaluate: {exc}", file=sys.stderr)
        return 2
    report = data.report
    counts = report["counts"]
    if not counts["truth_rows"]:
        print(
            f"riskmon evaluate: no truth row names an event of {args.events}: are the "
            "events and the truth of one simulation?",
            file=sys.stderr,
        )
        return 2
    if counts["truth_rows_without_event"] or counts["decisions_without_event"]:
        print(
            f"riskmon evaluate: warning: {counts['truth_rows_without_event']:,} truth rows and "
            f"{counts['decisions_without_event']:,} decisions name no event of {args.events}",
            file=sys.stderr,
        )
    print(format_report(report))
    money = report["money_caught_in_time"]["overall"]
    log.info(
        "evaluate.done",
        events=report["counts"]["events"],
        decisions=report["counts"]["decisions"],
        ap=report["average_precision"]["overall"],
        money_caught_share=money["share"],
        honest_flag_rate=report["honest_flag_rate"]["overall"]["rate"],
    )
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    if args.plot:
        plot(data, args.plot)
    return 0

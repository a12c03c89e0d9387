"""``riskmon rules check``: rule files checked as a worker checks them, before publishing."""

from __future__ import annotations

from pathlib import Path

import pytest

from riskmon.cli import main

GOOD = """
rules:
  - rule_id: new_device_big_loan
    version: 3
    applies_to: [application]
    when: event.amount > 5000 && features.minutes_since_new_device < 60
    score: 0.6
    severity: high
    action: review
    mode: shadow
    reason: A large loan from a device new to the user within the hour.
    enabled: true
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_rule_files_pass_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The starter rules and a new rule file pass; each rule is listed with its mode."""
    starters = sorted(Path("rules/lending").glob("*.yaml"))
    files = [str(p) for p in starters] + [str(write(tmp_path, "mine.yaml", GOOD))]
    assert main(["--config", "/dev/null", "rules", "check", *files]) == 0
    out = capsys.readouterr().out
    assert "ok  new_device_big_loan v3 (shadow)" in out
    assert out.count("ok  ") > 10


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("features.minutes_since_new_device", "features.no_such_feature"), "no_such_feature"),
        (("event.amount > 5000 &&", "event.amount > >"), "new_device_big_loan"),
        (("severity: high", "severity: dreadful"), "severity"),
        (("version: 3", "version: 0"), "version"),
        (("__import__", "__import__"), "new_device_big_loan"),
    ],
)
def test_a_bad_rule_file_is_refused_with_its_file_and_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], says: str
) -> None:
    """An unknown feature, a syntax error, a value outside the schema, or a condition
    reaching for Python internals: the check fails (exit 1) naming the file, the rule
    and the fault."""
    old, new = change
    text = GOOD.replace(old, new)
    if old == "__import__":
        text = GOOD.replace("event.amount > 5000", "event.__class__.__name__ == 'dict'")
    path = write(tmp_path, "bad.yaml", text)
    assert main(["--config", "/dev/null", "rules", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and says in err, err


def test_two_files_defining_one_rule_version_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same rule id and version in two files is refused: which one would run?"""
    a, b = write(tmp_path, "a.yaml", GOOD), write(tmp_path, "b.yaml", GOOD)
    assert main(["--config", "/dev/null", "rules", "check", str(a), str(b)]) == 1
    assert "also defined in" in capsys.readouterr().err


def test_a_rule_too_large_for_one_message_is_refused_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule whose message would exceed the input limit fails the check (so a publish of
    its file sends none of the file's rules)."""
    big = GOOD.replace("    enabled: true", "    enabled: true\n    notes: " + "x" * 70_000)
    path = write(tmp_path, "big.yaml", big)
    assert main(["--config", "/dev/null", "rules", "check", str(path)]) == 1
    assert "bytes as a message, limit" in capsys.readouterr().err


def test_a_rule_reading_an_identifier_its_events_never_carry_passes_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rules check`` passes a rule that reads Wi-Fi features on applications, which
    carry no Wi-Fi network, and prints a note under it saying they are always 0 there;
    the starter rules get no note."""
    wifi = GOOD.replace("features.minutes_since_new_device < 60", "features.wifi_users_24h >= 4")
    starters = [str(p) for p in sorted(Path("rules/lending").glob("*.yaml"))]
    assert main(["--config", "/dev/null", "rules", "check", *starters]) == 0
    assert "note:" not in capsys.readouterr().out
    assert (
        main(["--config", "/dev/null", "rules", "check", str(write(tmp_path, "w.yaml", wifi))]) == 0
    )
    out = capsys.readouterr().out
    assert "ok  new_device_big_loan v3 (shadow)" in out
    assert "    note: features.wifi_users_24h is 0 on every application event" in out


def test_a_rule_reading_an_event_field_the_contract_lacks_passes_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt event field (``event.ammount``) is absent from every event, so the rule
    would never fire: ``rules check`` passes it (a producer may send fields of its own)
    with a note naming the field and the contract's field it resembles."""
    typo = GOOD.replace("event.amount > 5000", "event.ammount > 5000")
    assert (
        main(["--config", "/dev/null", "rules", "check", str(write(tmp_path, "t.yaml", typo))]) == 0
    )
    out = capsys.readouterr().out
    assert "note: event.ammount is no field of application events in the contract" in out
    assert "did you mean 'amount'?" in out

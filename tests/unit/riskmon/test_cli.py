"""The command line: every command's ``--help`` lists the command's own options."""

from __future__ import annotations

import pytest

from riskmon.cli import COMMANDS, main

#: an option each command's help must show
OPTIONS = {
    "stack": "ACTION",
    "topics": "--partitions",
    "worker": "--web-port",
    "replay": "--decisions",
    "simulate": "--users",
    "evaluate": "DECISIONS",
    "demo": "--rate",
    "tail": "--from-beginning",
    "profile": "entity_id",
    "rules": "FILE",
    "label": "--transaction",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_a_command_lists_its_options(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``riskmon COMMAND --help`` exits 0 and shows the options the command's module adds
    (argparse would otherwise print the help before they are added)."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert OPTIONS[command] in capsys.readouterr().out


def test_help_without_a_command_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """``riskmon --help`` lists the commands and succeeds; no command at all is an error."""
    assert main(["--help"]) == 0
    assert "replay" in capsys.readouterr().out
    assert main([]) == 2


def test_tail_without_topics_follows_alerts_and_adjustments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``riskmon tail`` with no topic named follows its default topics (argparse once
    refused its own default list), and named topics replace them."""
    import riskmon.tail

    followed: list[list[str]] = []

    async def fake_tail(settings: object, topics: list[str], *rest: object) -> None:
        followed.append(topics)

    monkeypatch.setattr(riskmon.tail, "_tail", fake_tail)
    assert main(["tail", "--limit", "1"]) == 0
    assert main(["tail", "decisions"]) == 0
    assert followed == [["risk.alerts", "risk.adjustments"], ["risk.decisions"]]
    with pytest.raises(SystemExit):
        main(["tail", "alert"])

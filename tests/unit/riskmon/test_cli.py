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

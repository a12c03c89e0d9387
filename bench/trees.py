"""The trees a comparison runs in: the working tree and, with ``--against COMMIT``, that
commit of this repository checked out beside it in a temporary git worktree."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def trees(against: str | None, work: Path) -> Iterator[list[tuple[str, Path]]]:
    """``[(name, path)]``: the commit ``against`` first (checked out under ``work``,
    removed again on leaving), then the working tree."""
    found = [("working tree", ROOT)]
    old = work / "against"
    if against:
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(old), against], check=True, cwd=ROOT
        )
        found.insert(0, (against, old))
    try:
        yield found
    finally:
        if against:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], check=False, cwd=ROOT
            )


def env_for(tree: Path) -> dict[str, str]:
    """The environment of a run of ``tree``'s code: its packages first on the path, and
    none of the caller's ``RISKMON_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    env["PYTHONPATH"] = str(tree)
    return env

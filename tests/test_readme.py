"""The README's commands exist as written: each module runs, and knows every option the README shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[tuple[str, list[str]]]:
    """(command, options) for every `python -m ...` in the README's Commands table."""
    text = (PROJECT / "README.md").read_text()
    table = text[text.index("## Commands") : text.index("### Catalogues")]
    commands = []
    for cell in re.findall(r"`(python -m [^`]+)`", table):
        words = cell.split()
        module = words[2]
        subcommand = words[3] if module == "search.store" else None
        options = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-k)\b", cell)))
        commands.append((" ".join(filter(None, [module, subcommand])), options))
    return commands


COMMANDS = readme_commands()


def test_the_table_lists_every_program():
    modules = {command.split()[0] for command, _ in COMMANDS}
    assert {"ingest", "search", "search.store", "search.eval", "ingest.sample"} <= modules


@pytest.mark.parametrize("command, options", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_each_command_knows_the_options_the_readme_shows(command, options):
    process = subprocess.run(
        [sys.executable, "-m", *command.split(), "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert process.returncode == 0, process.stderr
    # Whole options only: the README's --from must not pass on the strength of a --from-engine.
    missing = [option for option in options if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", process.stdout)]
    assert not missing, f"{command} --help does not know {missing}"

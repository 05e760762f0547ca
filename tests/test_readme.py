"""The README a newcomer reads: short, opening with the two commands that
`.ci/run` and a fresh machine run, and naming a working command per method."""

import pathlib
import re

from aefs_keras.cli import SELECTION_CHOICES

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_is_short_and_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    commands = [l.strip() for l in lines[:15] if l.startswith("    python3 -m venv")]
    assert len(commands) == 2 and commands[0].endswith("aefs-keras demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1].split("&& ", 2)[2] in ci  # CI runs exactly the README's test command


def test_which_method_table_names_a_valid_command_for_each_method():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Which method?"):].split("\n\n")[2]
    rows = [r for r in table.splitlines()[2:] if r.startswith("|")]
    assert len(rows) == 5
    for row in rows:
        chosen = re.findall(r"--selection (\w+)", row)
        assert chosen and all(c in SELECTION_CHOICES for c in chosen), row

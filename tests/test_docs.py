"""The manual cannot drift from the code: every setting and every command of the CLI is in
docs/operations.md, and every command has help text."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click
import pytest

from profilestore.cli import main
from profilestore.config import Settings

OPERATIONS = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()


def _commands(group: click.Group, path: str = "profilestore") -> dict[str, click.Command]:
    """Every command and subcommand, by its full name, e.g. `profilestore token create`."""
    found: dict[str, click.Command] = {}
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        found[f"{path} {name}"] = command
        if isinstance(command, click.Group):
            found |= _commands(command, f"{path} {name}")
    return found


def _settings_table() -> dict[str, list[str]]:
    """The rows of the Configuration table, by variable: [default, meaning]."""
    section = OPERATIONS.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(PROFILESTORE_\w+)` \|(.*)\|\s*$", section, flags=re.M)
    return {name: [cell.strip() for cell in rest.split(" | ")] for name, rest in rows}


COMMANDS = _commands(main)
SETTINGS = [f"PROFILESTORE_{f.name.upper()}" for f in fields(Settings)]
DOCUMENTED_SETTINGS = _settings_table()


@pytest.mark.parametrize("variable", SETTINGS)
def test_setting_is_documented_with_default_and_meaning(variable):
    assert variable in DOCUMENTED_SETTINGS, f"{variable} is not in the Configuration table of docs/operations.md"
    default, meaning = DOCUMENTED_SETTINGS[variable]
    assert default and meaning


@pytest.mark.parametrize("variable", DOCUMENTED_SETTINGS)
def test_documented_setting_exists(variable):
    assert variable in SETTINGS, f"docs/operations.md documents {variable}, which Settings does not have"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_documented(name):
    heading = re.compile(rf"^#+ `{re.escape(name)}`\s*$", flags=re.M)
    assert heading.search(OPERATIONS), f"docs/operations.md has no heading for `{name}`"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help(name):
    command = COMMANDS[name]
    assert (command.help or "").strip(), f"`{name}` has no help text (a docstring or help=)"


def test_every_command_is_found():
    assert {"profilestore serve", "profilestore token create", "profilestore client set"} <= set(COMMANDS)

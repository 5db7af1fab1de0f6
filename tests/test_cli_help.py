"""Every command's --help states the defaults the code uses: one `--device` default (auto) and one `--preset`
default (auto) everywhere, and every literal default said by the parser itself or, where the help words it, the
same value."""

import argparse
import json
import re

import pytest
import torch

from dictsr_core.cli import build_parser, format_default, main, resolve_preset
from dictsr_core.training.devices import pick_device


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def stated_help(command: argparse.ArgumentParser, action) -> str:
    """An option's help as --help prints it (the formatter's additions included), on one line."""
    formatter = command._get_formatter()
    return " ".join(formatter._expand_help(action).split()) if action.help else ""


LITERAL = [(name, action) for name, command in commands().items() for action in command._actions
           if action.option_strings and action.help != argparse.SUPPRESS
           and action.default not in (None, False, argparse.SUPPRESS)]


@pytest.mark.parametrize("name, action", LITERAL, ids=[f"{n} {a.option_strings[-1]}" for n, a in LITERAL])
def test_a_literal_default_is_stated_as_it_is(name, action):
    text = stated_help(commands()[name], action)
    value = format_default(action.default)
    statements = re.findall(r"\(default: ([^)]*)\)", text)
    if value == "":  # an empty string default: its help says what it means
        assert "default" in text, f"{name} {action.option_strings[-1]}: say what no value means"
        return
    assert statements, f"{name} {action.option_strings[-1]}: --help does not state its default {value!r}: {text!r}"
    assert statements[-1].split(",")[0].strip() == value, (
        f"{name} {action.option_strings[-1]}: --help states default {statements[-1]!r}, the code uses {value!r}")


def test_every_help_prints():
    for name, command in commands().items():
        text = command.format_help()
        assert text.startswith("usage:"), name


def test_one_device_default_and_one_preset_default_everywhere():
    devices = {name: a.default for name, c in commands().items() for a in c._actions if "--device" in a.option_strings}
    presets = {name: a.default for name, c in commands().items() for a in c._actions if "--preset" in a.option_strings}
    assert len(devices) >= 9 and set(devices.values()) == {"auto"}, devices
    assert {"train", "info"} <= set(presets) and set(presets.values()) == {"auto"}, presets
    assert pick_device("auto") == pick_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_preset("auto") == ("gpu" if torch.cuda.is_available() else "cpu") and resolve_preset("tiny") == "tiny"


@pytest.mark.slow
def test_info_without_a_preset_describes_what_this_machine_would_train(capsys):
    assert main(["info", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    rows = shown if isinstance(shown, list) else [shown]
    assert rows[0]["preset"] == resolve_preset("auto")

"""The command line a newcomer reads: `train --help` short and described,
and every selection option of the selection classes a flag (no TensorFlow)."""

import argparse
import dataclasses

import pytest

from aefs_keras import selection
from aefs_keras.cli import build_parser


def _train(show_all):
    sub = next(a for a in build_parser(show_all)._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def _options(parser):
    return [a for a in parser._actions if a.option_strings]


def test_train_help_shows_at_most_30_options_each_described_with_its_default():
    shown = [a for a in _options(_train(False)) if a.help != argparse.SUPPRESS]
    assert len(shown) <= 30, [a.option_strings for a in shown]
    text = _train(False).format_help()
    for a in shown:
        assert a.help and a.help.strip(), a.option_strings
        if a.default not in (None, False, "", argparse.SUPPRESS) and a.nargs != 0:
            default = " ".join(map(str, a.default)) if isinstance(a.default, list) else str(a.default)
            assert default in text, (a.option_strings, default)
    for needed in ("--train", "--label", "--split-mode", "--time-column", "--selection", "--k-ratio",
                   "--epochs", "--export"):
        assert needed in text


def test_help_all_describes_every_option():
    full = _options(_train(True))
    assert len(full) > 30
    for a in full:
        assert a.help and a.help != argparse.SUPPRESS and a.help.strip(), a.option_strings


def test_every_selection_option_is_a_flag_or_python_only():
    flags = {s for a in _options(_train(True)) for s in a.option_strings}
    for cls in selection.SELECTION_TYPES:
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            if field.name in selection.PYTHON_ONLY:
                continue
            assert field.name in selection.OPTION_HELP, f"{cls.__name__}.{field.name} has no command-line help"
            assert "--" + field.name.replace("_", "-") in flags, field.name
    for name in {"static", "mixed_dimension", "aefs", "adafs", "mixed", "none"}:
        assert name in _train(False).format_help()


@pytest.mark.parametrize("argv, want", [
    (["--selection", "aefs", "--keep-share", "0.5", "--no-reweight", "--aux-hidden-units", "8", "4"],
     {"keep_share": 0.5, "reweight": False, "aux_hidden_units": [8, 4]}),
    (["--selection", "static", "--fields", "a, b"], {"fields": ["a", "b"]}),
])
def test_selection_flags_reach_the_selection_object(argv, want):
    from aefs_keras.jobs import _selection_options

    args = build_parser().parse_args(["train", *argv])
    options = _selection_options(args)
    assert options == want
    kind = "static" if args.selection == "static" else args.selection
    built = selection.as_selection(kind, options)
    for name, value in want.items():
        got = getattr(built, name)
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value

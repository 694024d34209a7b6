"""Every sub-command is registered, and one that cannot be imported fails the command loudly (never dropped)."""

from __future__ import annotations

import sys
import types

import pytest

from asfe3d import cli


def test_every_command_is_registered():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {*cli.COMMAND_MODULES, *cli.PASSTHROUGH}
    assert {"fuse", "demo", "bids"} <= set(cli.COMMAND_MODULES)


def test_a_broken_command_module_fails_loudly(monkeypatch):
    broken = types.ModuleType("asfe3d.cli.broken")

    def add_parser(sub):
        raise RuntimeError("broken command")

    broken.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "asfe3d.cli.broken", broken)
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "broken"))
    with pytest.raises(RuntimeError, match="broken command"):
        cli.build_parser()
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES[:-1], "missing_command"))
    with pytest.raises(ModuleNotFoundError, match="asfe3d.cli.missing_command"):
        cli.build_parser()

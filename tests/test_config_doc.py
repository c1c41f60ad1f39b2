"""docs/ops.md's configuration table names every NodeConfig field (and nothing that is not one)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from gmchain.node.config import NodeConfig

DOC = (Path(__file__).resolve().parent.parent / "docs" / "ops.md").read_text()


def test_every_config_field_is_documented() -> None:
    section = DOC.split("## Node configuration (`config.toml`)", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {k for row in rows for k in re.findall(r"`([a-z_0-9]+)`", row.split("|")[1])}
    expected = {f.name for f in fields(NodeConfig)} - {"extra"}
    assert named == expected, (sorted(expected - named), sorted(named - expected))

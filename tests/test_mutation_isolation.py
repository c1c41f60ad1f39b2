"""Planted consensus bugs (consensus/mutations.py) cannot be enabled in a node (issue 11, item 4).

They reach a replica only as `Replica(bugs=...)`: a node's config file cannot name them, neither
`NodeConfig` nor `ConsensusConfig` has a field for them, no module of the node package imports
the mutations module or passes `bugs=` anywhere, and the replica a running node builds has none.
"""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from gmchain.consensus import ConsensusConfig
from gmchain.consensus.mutations import Bug
from gmchain.node.config import ConfigError, NodeConfig, load_config, write_config
from tests.node_helpers import make_net, running_service

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


def _config_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "node.toml"
    cfg = NodeConfig(data_dir="db", genesis_file="genesis.json", key_file="node.key")
    write_config(path, cfg)
    path.write_text(path.read_text() + extra)
    return path


def test_a_valid_config_file_loads(tmp_path: Path) -> None:
    """The control for the two refusals below: without the bug line the same file loads."""
    assert load_config(_config_file(tmp_path, "")).key_file.endswith("node.key")


@pytest.mark.parametrize(
    "extra",
    [
        'bugs = ["quorum-2f"]\n',
        'consensus_bugs = ["skip-lock-check"]\n',
        '[consensus]\nbugs = ["forget-safety"]\n',
    ],
)
def test_a_config_file_naming_a_bug_is_refused(tmp_path: Path, extra: str) -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(_config_file(tmp_path, extra))


def test_no_config_object_has_a_field_for_bugs() -> None:
    for cls in (NodeConfig, ConsensusConfig):
        assert not [f.name for f in fields(cls) if "bug" in f.name.lower()], cls
    with pytest.raises(TypeError):
        ConsensusConfig(bugs=frozenset({Bug.QUORUM_2F}))  # type: ignore[call-arg]


def test_the_node_package_never_reaches_the_mutations() -> None:
    """Read every module of node/: no import of consensus.mutations (or of `Bug` from anywhere),
    no call with a `bugs=` keyword."""
    problems: list[str] = []
    files = sorted(NODE_DIR.glob("*.py"))
    assert len(files) > 10  # the scan reads the real package
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                if (node.module or "").endswith("mutations") or "Bug" in names:
                    problems.append(f"{path.name}:{node.lineno} imports {node.module}")
            elif isinstance(node, ast.Import):
                problems += [
                    f"{path.name}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name.endswith("mutations")
                ]
            elif isinstance(node, ast.Call) and any(k.arg == "bugs" for k in node.keywords):
                problems.append(f"{path.name}:{node.lineno} passes bugs=")
    assert problems == []


async def test_the_replica_of_a_running_node_has_no_planted_bug(tmp_path: Path) -> None:
    net = make_net()
    async with running_service(tmp_path, net) as service:
        replica = service.driver.replica  # (the consensus driver owns it)
        assert replica.bugs == frozenset()
        # Rule-level evidence, not only the flag: the full quorum is required (no QUORUM_2F).
        assert replica.certs.threshold == replica.validators.quorum_power

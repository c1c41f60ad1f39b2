"""The validator-set provider (chain/validators.py, issue 11 item 6): one object answers "the
validator set at height h", and no reader in chain/, node/ or the simulator reads
`Genesis.validators` itself (so epochs change one place)."""

from __future__ import annotations

import pathlib
import re

from gmchain.chain.validators import GenesisValidators
from gmchain.consensus.sim.app import make_sim_genesis

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Writing the genesis document is not reading the validator set; nor is the ceremony's assembling
# it from the sites' descriptors and checking, at `site install`, that this site is in it.
_DOCUMENT_WRITERS = {"node/config.py", "node/ceremony_genesis.py", "node/cli_site.py"}
_READ = re.compile(r"\b(genesis|g)\.validators\b")


def test_genesis_provider_answers_the_genesis_set_at_every_height() -> None:
    genesis = make_sim_genesis(7)
    provider = GenesisValidators(genesis)
    for h in (0, 1, 999_999):
        assert provider.validators_at(h) == genesis.validators
        voting = provider.voting_set_at(h)
        assert sorted(voting.node_ids) == sorted(v.node_id for v in genesis.validators)
        assert (voting.total_power, voting.quorum_power) == (7, 5)


def test_no_reader_outside_the_provider_reads_genesis_validators() -> None:
    offenders = []
    for folder in ("chain", "node", "consensus/sim"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "chain/validators.py" or rel in _DOCUMENT_WRITERS:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if _READ.search(code):
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []

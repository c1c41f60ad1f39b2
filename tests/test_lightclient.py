"""chain/lightclient.py's trust anchor: what a light client accepts to trust (pure functions).

The proof and header-chain checks run on real nodes' answers in tests/test_node_service.py,
tests/test_sdk.py and tests/test_fault_16_*.py; here, the anchor's own refusals (rule 2, rule 4).
"""

from __future__ import annotations

from typing import Any

import pytest

from gmchain.chain.genesis import make_genesis_block
from gmchain.chain.lightclient import (
    TrustAnchor,
    TrustAnchorError,
    compute_validator_set_fingerprint,
)
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.types import Genesis, GenesisValidator


def _validator(org: str = "o", power: int = 1) -> GenesisValidator:
    return GenesisValidator(
        pubkey=PrivateKey.generate().public_key.to_bytes(), power=power, org=org
    )


def test_from_genesis_binds_the_genesis_block() -> None:
    genesis = Genesis(chain_id="c", timestamp_ms=1, validators=(_validator(), _validator()))
    trust = TrustAnchor.from_genesis(genesis)
    assert trust.chain_id == "c" and trust.validators == genesis.validators
    block0 = make_genesis_block(genesis)[0].header
    assert trust.genesis == (genesis.compute_hash(), block0.block_id)
    assert block0.parent_id == genesis.compute_hash()
    assert trust.fingerprint == compute_validator_set_fingerprint(genesis.validators)


def test_from_validators_reads_json_objects() -> None:
    v = _validator(power=3)
    for pub in ("0x" + v.pubkey.hex(), v.pubkey.hex(), "0X" + v.pubkey.hex().upper()):
        trust = TrustAnchor.from_validators([{"pubkey": pub, "power": 3}], "c")
        assert trust.validators[0].pubkey == v.pubkey and trust.validators[0].power == 3
        assert trust.genesis is None
    # organisations do not count: certificates carry keys and power only
    renamed = TrustAnchor.from_validators([{"pubkey": v.pubkey.hex(), "power": 3, "org": "z"}], "c")
    assert renamed.fingerprint == TrustAnchor.from_validators([v], "c").fingerprint


@pytest.mark.parametrize(
    ("validators", "chain_id", "message"),
    [
        ([{"pubkey": "0x04" + "11" * 64, "power": 1}], "c", "not an SM2 public key"),
        ([{"power": 1}], "c", r"validators\[0\]: expected \{pubkey, power, org\}"),
        ([{"pubkey": "zz", "power": 1}], "c", r"validators\[0\]"),
        ([{"pubkey": "0x" + "04" * 65, "power": 0}], "c", r"validators\[0\]"),
        ([], "c", "the trusted validator set is empty"),
        (None, "", "needs its chain_id"),
    ],
)
def test_unusable_anchors_are_refused(validators: Any, chain_id: str, message: str) -> None:
    with pytest.raises(TrustAnchorError, match=message):
        TrustAnchor.from_validators([_validator()] if validators is None else validators, chain_id)


def test_a_key_named_twice_is_refused() -> None:
    v = _validator()
    with pytest.raises(TrustAnchorError, match="names a key twice"):
        TrustAnchor(chain_id="c", validators=(v, v))

"""EPOCHS.md E10 / chain/txrules.py R8b: accounts of an org removed by governance are refused at
admission and in block validation, with a message naming the org and the proposal. Real signed
transactions through the real chain library over LevelDB."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmchain.chain.txrules import Rejection, TxRejected, TxRules
from gmchain.contracts.governance import propose_args, vote_args
from gmchain.crypto_sm import PrivateKey
from gmchain.ledger.genesis import Genesis, GenesisValidator
from gmchain.ledger.types import ReceiptStatus
from gmchain.node.admission import CommittedView
from tests.node_helpers import CHAIN_ID, T0, ChainRig, TestNet, forge_block, sign_tx

MESSAGE = "account's organisation 'org-b' was removed by governance (proposal 1)"


@pytest.fixture
def rig(tmp_path: Path) -> ChainRig:
    node, admin_a, admin_b, member_b = (PrivateKey.generate() for _ in range(4))
    genesis = Genesis(
        chain_id=CHAIN_ID,
        timestamp_ms=T0,
        validators=(GenesisValidator(pubkey=node.public_key.to_bytes(), power=1, org="org-a"),),
        replay_window=50,
        accounts=tuple(
            (k.public_key.to_bytes(), org, role)
            for k, org, role in (
                (admin_a, "org-a", "admin"),  # the committee: org-a alone (its validator's org)
                (admin_b, "org-b", "admin"),
                (member_b, "org-b", "member"),
            )
        ),
    )
    r = ChainRig(tmp_path / "db", TestNet(genesis, node, [admin_a, admin_b, member_b], node))
    yield r
    r.close()


def _gov(rig: ChainRig, key: PrivateKey, method: str, args: list[object]) -> object:
    return sign_tx(
        key, expiry=rig.chain.head.height + 20, contract="governance", method=method, args=args
    )


def test_removed_orgs_accounts_are_refused_at_admission_and_in_blocks(rig: ChainRig) -> None:
    admin_a, admin_b, member_b = rig.net.accounts
    head = rig.chain.head.height
    b1 = rig.build_and_commit(
        _gov(rig, admin_a, "propose", propose_args("remove_org", ["org-b"], head + 30))
    )
    vote = _gov(rig, admin_a, "vote", vote_args(1, True))
    rig.admit(vote)
    b2 = rig.build()  # certified, not committed yet
    assert [r.status for r in rig.receipts(b1)] == [ReceiptStatus.OK]
    executor = rig.chain.executor
    later = sign_tx(member_b, expiry=head + 20)
    # On top of the uncommitted block that removed org-b: refused; on committed state: not yet.
    parent_res = rig.chain._result_for_parent(b2.header)
    with pytest.raises(TxRejected) as info:
        executor.check_tx(later, b2.header.height + 1, parent_res)
    assert info.value.rejection is Rejection.ORG_REMOVED and info.value.message == MESSAGE
    assert executor.check_tx(later, b2.header.height, None)[1] == "org-b"
    rig.commit(b2)
    assert rig.receipts(b2)[0].result == "executed"
    # Committed: block rules (the leader's check and the replica's validation) and admission.
    for key in (admin_b, member_b):
        tx = sign_tx(key, expiry=rig.chain.head.height + 20)
        with pytest.raises(TxRejected) as info:
            executor.check_tx(tx, rig.chain.head.height + 1, None)
        assert info.value.rejection is Rejection.ORG_REMOVED and info.value.message == MESSAGE
        view = CommittedView(
            tx_location=rig.store.get_tx_location,
            account_of=executor.lookup_sender_uncached,
            org_removal_of=executor.lookup_org_removal_uncached,
        )
        with pytest.raises(TxRejected) as info:
            TxRules.check_state(tx, view)
        assert info.value.rejection is Rejection.ORG_REMOVED
    forged = forge_block(rig, rig.chain.head, [later], ts=rig.now_ms + 1000)
    assert not rig.chain.validate_block(forged, rig.chain.head, now_ms=rig.now_ms + 1000)
    # A leader never packs it: it is evicted as never valid; org-a is unaffected.
    rig.admit(later)
    fine = sign_tx(admin_a, expiry=rig.chain.head.height + 20)
    rig.admit(fine)
    block = rig.build()
    assert [t.tx_id for t in block.txs] == [fine.tx_id]
    assert later.tx_id not in rig.mempool

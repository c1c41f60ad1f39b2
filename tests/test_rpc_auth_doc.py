"""docs/rpc.md's login worked example and policy table against the code (node/rpcsession.py,
node/rpcauth.py): the documented bytes are recomputed from the documented inputs, the documented
signature verifies, and every method of the table's rows is in the class POLICY gives it."""

from __future__ import annotations

import re
from pathlib import Path

from gmchain.crypto_sm import PrivateKey, PublicKey
from gmchain.ledger.codec import encode
from gmchain.ledger.wire import SIGNING_DOMAINS
from gmchain.node.rpcauth import CALL_POLICY, POLICY, Access
from gmchain.node.rpcsession import compute_login_root

DOC = (Path(__file__).resolve().parents[1] / "docs" / "rpc.md").read_text()


def _example() -> dict[str, bytes]:
    block = DOC.split("Worked example", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    return {k: bytes.fromhex(v) for k, v in re.findall(r"^(\w+)\s+([0-9a-f]+)$", block, re.M)}


def test_login_worked_example_is_recomputed() -> None:
    ex = _example()
    key = PrivateKey.from_bytes(b"\x01" * 32)
    node_id = PrivateKey.from_bytes(b"\x02" * 32).public_key.address
    challenge = bytes(range(32))
    assert ex["publicKey"] == key.public_key.to_bytes()
    assert ex["nodeId"] == node_id
    assert ex["enc"] == encode(["example-chain", node_id, challenge])
    assert ex["preimage"] == b"GMCHAIN/RPC-LOGIN/v1\x00" + ex["enc"]
    assert SIGNING_DOMAINS["rpc-login"] == b"GMCHAIN/RPC-LOGIN/v1"
    root = compute_login_root("example-chain", node_id, challenge)
    assert ex["root"] == root
    assert PublicKey.from_bytes(ex["publicKey"]).verify(root, ex["signature"])


def test_policy_table_rows_match_the_code() -> None:
    table = DOC.split("### Who reads what", 1)[1].split("###", 1)[0]
    lines = [r for r in table.splitlines() if r.startswith("| ") and not r.startswith("| class")]
    rows = {r.split("|")[1].strip(): r.split("|")[2] for r in lines}
    classes = {"public": Access.PUBLIC, "any account": Access.ACCOUNT, "org": Access.ORG}
    for label, access in classes.items():
        cell = rows[label].split(";")[0]  # the plain methods come first in each row
        for name in re.findall(r"`(gm_\w+|rpc\.discover)`", cell):
            assert POLICY[name] is access, (label, name)
    assert POLICY["gm_getArrivals"] is Access.READ_ALL and "`gm_getArrivals`" in rows["readAll"]
    for view, access in CALL_POLICY.items():
        contract, method = view.split(".")
        named = (f"`{view}`", f"`{method}`", f"`{contract}.*`")
        assert any(n in table for n in named), view
        assert access is not Access.BY_PARAMS

"""node/rpcxc.py's OpenRPC entries (rule 1 there): each cross-chain method's result schema is what
the JSON layer renders from the declared shape of the query it answers with, derived again here
from the node's registry (scripts/gen_openrpc_results.py writes them; a stale document fails).
The methods' answers on real chains are checked by tests/test_relay.py and
tests/test_openrpc_conformance.py (every answer of the suite is validated against the document).
"""

from __future__ import annotations

import importlib.util

from gmchain.crosschain import node_registry
from gmchain.ledger.jsonshapes import shape_json_schema
from gmchain.node.rpcspec import METHODS, load_openrpc
from gmchain.node.rpcxc import XC_METHODS
from tests.node_helpers import ROOT


def _script() -> object:
    spec = importlib.util.spec_from_file_location(
        "gen_openrpc_results", ROOT / "scripts" / "gen_openrpc_results.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cross_chain_result_schemas_are_the_declared_shapes() -> None:
    results = {
        f"{c['name']}.{m['name']}": shape_json_schema(m["returns"])
        for c in node_registry().describe()["contracts"]
        for m in c["methods"]
        if m["kind"] == "query"
    }
    expected = _script().xc_method_results(results)  # type: ignore[attr-defined]
    documented = {m["name"]: m for m in load_openrpc()["methods"]}
    assert set(expected) == XC_METHODS <= METHODS.keys() and documented.keys() >= XC_METHODS
    for name in XC_METHODS:
        assert documented[name]["result"]["schema"] == expected[name], (
            f"{name}: stale: run python scripts/gen_openrpc_results.py"
        )
    # The relayed record carries the header that verified it (node/rpcxc.py rule 2).
    record = documented["gm_getRelayedRecord"]["result"]["schema"]["anyOf"][0]
    assert {"recvTxId", "header", "recordId", "seq"} <= set(record["required"])

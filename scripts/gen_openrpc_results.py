"""Rewrite `gm_call`'s `x-results` in docs/openrpc.json and node/openrpc.json from the registry.

Rules this script keeps:
1. `x-results` maps every query `contract.method` of the node's registry (`node_registry()`) to
   the JSON Schema of what the JSON layer renders from the query's declared shape
   (`ledger.jsonshapes.shape_json_schema`): exactly what
   tests/test_rpc_validate.py::test_openrpc_query_schemas_are_the_declared_shapes expects.
2. The `result` schemas of the cross-chain methods (node/rpcxc.py) are derived the same way from
   the xclient and evidence queries they render (`xc_method_results`), as
   tests/test_rpcxc.py expects.
3. Nothing else of the documents changes; both files are written identically (2-space JSON), so
   node/openrpc.json (the copy the node serves) stays equal to docs/openrpc.json.
Run it after adding, removing or changing a system contract's query: python
scripts/gen_openrpc_results.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FILES = (ROOT / "docs" / "openrpc.json", ROOT / "node" / "openrpc.json")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema and {"type": "null"} in schema["anyOf"]:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _record(schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema inside an optional one."""
    inner = next((s for s in schema.get("anyOf", ()) if s.get("type") == "object"), schema)
    return dict(inner)


def xc_method_results(results: dict[str, Any]) -> dict[str, Any]:
    """Rule 2: method name -> result schema, from the queries' schemas (`x-results`)."""
    packet = json.loads(json.dumps(_record(results["xclient.packet"])))
    packet["required"] = [*packet["required"], "header"]
    header = _nullable(_record(results["xclient.header"]))
    header["description"] = (
        "the verified header the record was proven against; updateNo names the client update "
        "that verified it"
    )
    packet["properties"]["header"] = header
    tx_id = {"type": "string", "pattern": "^0x[0-9a-f]{64}$"}
    packet["required"] = [*packet["required"], "updateTxId", "epochUpdateTxIds", "headerBytes"]
    packet["properties"]["updateTxId"] = {
        "anyOf": [tx_id, {"type": "null"}],
        "description": "the update_client transaction (on this chain) that verified header",
    }
    packet["properties"]["epochUpdateTxIds"] = {
        "type": "array",
        "items": tx_id,
        "description": (
            "the update_client transactions that verified the epoch changes the client stored "
            "below the header's epoch, ascending by epoch, each once, updateTxId excluded"
        ),
    }
    packet["properties"]["headerBytes"] = {
        "anyOf": [{"type": "string", "pattern": "^0x([0-9a-f]{2})*$"}, {"type": "null"}],
        "description": (
            "the header's canonical BlockHeader bytes (protocol.md section 2), from the "
            'ClientUpdate of updateTxId; its signing root under DOMAIN["header"] is blockId'
        ),
    }
    outbox = {
        "type": "object",
        "required": ["count", "packets"],
        "properties": {"count": {"type": "integer"}, "packets": results["evidence.outbox"]},
        "additionalProperties": False,
    }
    return {
        "gm_getCrossChainClient": _nullable(results["xclient.client"]),
        "gm_getArrivals": results["xclient.arrivals"],
        "gm_getRelayedRecord": _nullable(packet),
        "gm_getOutbox": outbox,
        "gm_getAck": _nullable(results["xclient.ack_of_record"]),
    }


def main() -> int:
    from gmchain.crosschain import node_registry  # the node's registry: xclient included
    from gmchain.ledger.jsonshapes import shape_json_schema

    results = {
        f"{c['name']}.{m['name']}": shape_json_schema(m["returns"])
        for c in node_registry().describe()["contracts"]
        for m in c["methods"]
        if m["kind"] == "query"
    }
    for path in FILES:
        doc = json.loads(path.read_text())
        (call,) = (m for m in doc["methods"] if m["name"] == "gm_call")
        call["x-results"] = results
        xc = xc_method_results(results)
        for method in doc["methods"]:
            if method["name"] in xc:
                method["result"]["schema"] = xc[method["name"]]
        path.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rewrite `gm_call`'s `x-results` in docs/openrpc.json and node/openrpc.json from the registry.

Rules this script keeps:
1. `x-results` maps every query `contract.method` of `crosschain.node_registry()` (the node's
   contracts: the system contracts and xclient) to the JSON Schema of what the JSON layer
   renders from the query's declared shape
   (`ledger.jsonshapes.shape_json_schema`): exactly what
   tests/test_rpc_validate.py::test_openrpc_query_schemas_are_the_declared_shapes expects.
2. Nothing else of the documents changes; both files are written identically (2-space JSON), so
   node/openrpc.json (the copy the node serves) stays equal to docs/openrpc.json.
Run it after adding, removing or changing a system contract's query: python
scripts/gen_openrpc_results.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = (ROOT / "docs" / "openrpc.json", ROOT / "node" / "openrpc.json")


def main() -> int:
    from gmchain.crosschain import node_registry
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
        path.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`gmchain cluster add-node`: a joining node in a local cluster (issue 12; docs/joining.md).

Rules this module keeps:
1. The new node gets a folder like any other (node/cluster.py's layout): its own key under the
   dev passphrase, `config.toml` (the first node's settings; peers: every node of the cluster),
   and `join-request.json` (node/keys_cli.py rule 6) for the committee's admit_observer proposal.
   Nothing secret leaves the folder.
2. Every other node's `[[peers]]` gains the new node (appended: `write_config` puts the peers
   last); a running node reads them again at its next epoch switch (node/peeradmission.py), so
   no restart is needed. cluster.json lists it with role "joining" (the role it was added with;
   the chain's view is gm_getValidators / the epoch's observers).
3. Nothing is started. Ports default to the highest in use + 1 and must not be another node's.
4. Failures are ClusterError: one line saying what to do (node/cluster.py rule 4).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from gmchain.crypto_sm import PrivateKey, save_private_key
from gmchain.node.cluster import ClusterError, load_cluster
from gmchain.node.config import ConfigError, PeerConfig, load_config, write_config
from gmchain.node.daemon import DEV_PASSPHRASE
from gmchain.node.keys_cli import make_join_request_doc

__all__ = ["add_node"]


def add_node(
    d: Path,
    *,
    name: str | None = None,
    org: str = "org1",
    rpc_port: int | None = None,
    p2p_port: int | None = None,
    key: PrivateKey | None = None,
) -> dict[str, Any]:
    """A joining node in cluster `d` with `key` (default: a new key); its cluster.json entry,
    with "node_id" and the path of its join request ("join_request")."""
    doc = load_cluster(d)
    nodes: list[dict[str, Any]] = doc["nodes"]
    names = {n["name"] for n in nodes}
    if name is None:
        name = next(
            f"node{i}" for i in range(len(nodes), len(nodes) + 65) if f"node{i}" not in names
        )
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ClusterError(f"--name {name!r}: letters, digits, '-' and '_' only")
    if name in names or (d / name).exists():
        raise ClusterError(f"{d / name} already exists; pick another --name")
    if len(nodes) >= 64:
        raise ClusterError("a local cluster holds at most 64 nodes")
    try:
        base = load_config(d / nodes[0]["name"] / "config.toml")  # settings shared by the cluster
    except ConfigError as exc:
        raise ClusterError(f"cannot read {nodes[0]['name']}'s config: {exc}") from None
    if rpc_port is None:
        rpc_port = max(n["rpc_port"] for n in nodes) + 1
    if p2p_port is None:
        p2p_port = max(n["p2p_port"] for n in nodes) + 1
    used = {n[k] for n in nodes for k in ("rpc_port", "p2p_port")}
    if rpc_port in used or p2p_port in used or rpc_port == p2p_port:
        raise ClusterError(f"ports {rpc_port}/{p2p_port}: one is taken by another node")
    key = key or PrivateKey.generate()
    if any(n["pubkey"] == key.public_key.to_bytes().hex() for n in nodes):
        raise ClusterError("that node key is already a node of the cluster")
    entry = {
        "name": name,
        "role": "joining",
        "pubkey": key.public_key.to_bytes().hex(),
        "rpc_port": rpc_port,
        "p2p_port": p2p_port,
        "org": org,
    }
    request = make_join_request_doc(doc["chain_id"], key, org)
    nd = d / name
    nd.mkdir()
    save_private_key(nd / "node.key", key, DEV_PASSPHRASE.encode())
    peers = tuple(_peer_config(n) for n in nodes)
    cfg = replace(
        base,
        name=name,
        data_dir="db",
        genesis_file="../genesis.json",
        key_file="node.key",
        rpc_port=rpc_port,
        p2p_port=p2p_port,
        peers=peers,
    )
    write_config(nd / "config.toml", cfg)
    (nd / "join-request.json").write_text(json.dumps(request, indent=2) + "\n")
    for n in nodes:  # the others learn where it is (write_config puts [[peers]] last)
        with open(d / n["name"] / "config.toml", "a") as f:
            f.write(_peer_toml(_peer_config(entry)))
    doc["nodes"] = [*nodes, entry]
    (d / "cluster.json").write_text(json.dumps(doc, indent=2) + "\n")
    node_id = "0x" + key.public_key.address.hex()
    return {**entry, "node_id": node_id, "join_request": str(nd / "join-request.json")}


def _peer_config(n: dict[str, Any]) -> PeerConfig:
    return PeerConfig(pubkey=n["pubkey"], host="127.0.0.1", port=n["p2p_port"], name=n["name"])


def _peer_toml(p: PeerConfig) -> str:
    return (
        f"\n[[peers]]\nname = {json.dumps(p.name)}\npubkey = {json.dumps(p.pubkey)}\n"
        f"host = {json.dumps(p.host)}\nport = {p.port}\n"
    )

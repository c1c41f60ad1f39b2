"""An in-memory `ChainStore` (ledger/store_api.py): the simulator's disk.

Rules this module keeps:
1. The same contract as the LevelDB store (tests/test_store_contract.py runs both): every
   `BlockWrite` is checked by the one shared `check_block_write` before anything changes, then
   applied whole; refused writes change nothing.
2. Crash semantics are the simulator's: this object *is* the disk. Everything written survives a
   simulated crash (the simulator models a crash by dropping the effects not yet run, and rebuilds
   the chain above the same `MemStore`); unsynced `put_meta` is kept too, since the replica's next
   synced write would have made it durable before any effect after it ran.
3. No IO and no threads: importing it pulls in neither plyvel nor asyncio.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from gmchain.ledger.store_acc import NodeGetter
from gmchain.ledger.store_api import BlockWrite, check_block_write, require_bytes

__all__ = ["MemStore"]


class MemStore:
    def __init__(self) -> None:
        self._blocks: list[bytes] = []  # block bytes by height
        self._headers: list[bytes] = []
        self._hashes: list[bytes] = []
        self._proofs: dict[int, bytes] = {}
        self._height_of: dict[bytes, int] = {}  # block hash -> height
        self._tx_at: dict[bytes, tuple[int, int]] = {}  # tx id -> (height, index)
        self._receipts: dict[bytes, bytes] = {}
        self._state: dict[str, dict[bytes, bytes]] = {}  # namespace -> key -> value
        self._sorted_keys: dict[str, list[bytes]] = {}  # namespace -> keys, built on demand
        self._index: dict[bytes, bytes] = {}
        self._leaves: list[bytes] = []
        self._nodes: dict[tuple[int, int], bytes] = {}  # level >= 1
        self._meta: dict[str, bytes] = {}
        self._epochs: list[bytes] = []  # epoch records 1, 2, ... (store_api rule 5)

    # --- writes ---------------------------------------------------------------------------------

    def commit_block(self, w: BlockWrite) -> None:
        new_nodes = check_block_write(
            w,
            next_height=len(self._blocks),
            acc_size=len(self._leaves),
            last_epoch=len(self._epochs),
            is_stored_hash=self._height_of.__contains__,
            is_stored_tx=self._tx_at.__contains__,
            get_node=self._node_getter(),
        )
        h = w.height
        self._blocks.append(w.block_bytes)
        self._headers.append(w.header_bytes)
        self._hashes.append(w.block_hash)
        self._height_of[w.block_hash] = h
        for i, (tx_id, receipt) in enumerate(zip(w.tx_ids, w.receipts, strict=True)):
            self._tx_at[tx_id] = (h, i)
            self._receipts[tx_id] = receipt
        self._leaves.extend(w.acc_leaves)
        self._nodes.update(new_nodes)
        for (ns, key), value in w.state_writes.items():
            space = self._state.setdefault(ns, {})
            if value is None:
                if space.pop(key, None) is not None:
                    self._sorted_keys.pop(ns, None)
            else:
                if key not in space:
                    self._sorted_keys.pop(ns, None)
                space[key] = value
        for ik, iv in w.index_writes.items():
            if iv is None:
                self._index.pop(ik, None)
            else:
                self._index[ik] = iv
        if w.commit_proof:
            self._proofs[h] = w.commit_proof
        if w.epoch_record is not None:
            self._epochs.append(w.epoch_record[1])

    def put_meta(self, key: str, value: bytes, *, sync: bool = True) -> None:
        self._meta[key] = require_bytes(value, f"metadata value of {key!r}")

    # --- reads ----------------------------------------------------------------------------------

    def head_height(self) -> int | None:
        return len(self._blocks) - 1 if self._blocks else None

    def _at(self, items: list[bytes], h: int) -> bytes | None:
        return items[h] if type(h) is int and 0 <= h < len(items) else None

    def get_block_by_height(self, h: int) -> bytes | None:
        return self._at(self._blocks, h)

    def get_header_by_height(self, h: int) -> bytes | None:
        return self._at(self._headers, h)

    def get_block_hash(self, h: int) -> bytes | None:
        return self._at(self._hashes, h)

    def get_commit_proof(self, h: int) -> bytes | None:
        return self._proofs.get(h)

    def get_height_by_hash(self, block_hash: bytes) -> int | None:
        return self._height_of.get(block_hash)

    def get_tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        return self._tx_at.get(tx_id)

    def get_receipt(self, tx_id: bytes) -> bytes | None:
        return self._receipts.get(tx_id)

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        space = self._state.get(namespace)
        return None if space is None else space.get(key)

    def iter_state(self, namespace: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        space = self._state.get(namespace)
        if not space:
            return
        keys = self._sorted_keys.get(namespace)
        if keys is None:
            keys = self._sorted_keys[namespace] = sorted(space)
        for key in keys[bisect.bisect_left(keys, prefix) :]:  # a snapshot: commits replace it
            if not key.startswith(prefix):
                return
            value = space.get(key)
            if value is not None:
                yield key, value

    def get_index(self, key: bytes) -> bytes | None:
        return self._index.get(key)

    def get_meta(self, key: str) -> bytes | None:
        return self._meta.get(key)

    def get_epoch_record(self, epoch: int) -> bytes | None:
        ok = type(epoch) is int and 1 <= epoch <= len(self._epochs)
        return self._epochs[epoch - 1] if ok else None

    def last_epoch(self) -> int:
        return len(self._epochs)

    def acc_size(self) -> int:
        return len(self._leaves)

    def get_acc_node(self, level: int, index: int) -> bytes | None:
        if level == 0:
            return self._at(self._leaves, index)
        return self._nodes.get((level, index))

    def _node_getter(self) -> NodeGetter:
        def get_node(level: int, index: int) -> bytes:
            v = self.get_acc_node(level, index)
            if v is None:
                raise KeyError((level, index))
            return v

        return get_node

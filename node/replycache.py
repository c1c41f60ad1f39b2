"""Encoded answers about committed blocks and transactions, kept for the next asker (a part of
node/rpcmethods.py; issue 15 item 3).

Rules this module keeps:
1. Only what never changes is kept: a committed block's summary (gm_getBlockByNumber/ByHash
   without full transactions) and a committed transaction (gm_getTransactionByHash), as the
   compact JSON text `dumps_compact` makes of the handler's answer, without `answeredAt`
   (node/queries.py rule 1: committed data never changes; a BFT commit is final). A pending,
   unknown or dropped transaction is never kept.
2. What is kept was re-checked when it was read (chain/readcheck.py, node/queries.py rule 2):
   the cache holds the checked answer, as the decoded-block cache there does.
3. Bounded: at most `max_bytes` of text in all (least recently used dropped first), and an
   answer longer than `max_entry_bytes` is never kept (a block of thousands of transactions
   costs its reader, not the cache).
4. The answer served from the cache is byte-identical to the one built afresh: `with_height`
   appends `answeredAt` exactly where the handler's dict would put it (last member), and the
   server splices the text in unchanged (node/rpcsend.py rule 4). tests/test_reply_cache.py
   compares both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from gmchain.node.rpcsend import JsonText
from gmchain.node.rpcspec import dumps_compact

__all__ = ["MAX_BYTES", "MAX_ENTRY_BYTES", "ReplyCache", "with_height"]

MAX_BYTES = 32 * 2**20  # rule 3: ~20,000 transactions or block summaries of ~100 txs
MAX_ENTRY_BYTES = 32 * 1024  # rule 3: a block summary of up to ~450 transactions


class ReplyCache:
    """Rule 3: an LRU of JSON texts bounded in total and per entry."""

    __slots__ = ("_entries", "_size", "hits", "max_bytes", "max_entry_bytes", "misses")

    def __init__(self, max_bytes: int = MAX_BYTES, max_entry_bytes: int = MAX_ENTRY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict[Hashable, str] = OrderedDict()
        self._size = 0  # characters held (ASCII JSON: bytes)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: Hashable) -> str | None:
        text = self._entries.get(key)
        if text is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return text

    def put(self, key: Hashable, answer: dict[str, Any]) -> str:
        """The answer's text (rule 4), kept if it fits (rule 3)."""
        text = dumps_compact(answer)
        if len(text) <= self.max_entry_bytes and key not in self._entries:
            self._entries[key] = text
            self._size += len(text)
            while self._size > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._size -= len(old)
        return text

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0


def with_height(text: str, height: int) -> JsonText:
    """The text of a JSON object with `"answeredAt": height` appended as its last member."""
    assert text.endswith("}") and text != "{}", text[:32]
    return JsonText(text[:-1] + ',"answeredAt":' + str(int(height)) + "}")

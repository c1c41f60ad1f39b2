"""Errors of the gmchain ledger store (`ledger.store`).

Rules: `StoreError` is the caller's fault or an environmental refusal (wrong height, bad argument,
store locked by another process, wrong chain); `StoreCorrupt` means the bytes on disk cannot be
trusted and the node must not serve them. Both carry a message a site operator can act on.
"""

from __future__ import annotations

__all__ = ["ChainMismatch", "StoreCorrupt", "StoreError"]

RECOVERY_HINT = "run `gmchain db check` / restore from backup"


class StoreError(Exception):
    """The store refused a request; nothing was written."""


class StoreCorrupt(StoreError):
    """The on-disk store is inconsistent or damaged; it refuses to serve anything."""


class ChainMismatch(StoreError):
    """The database belongs to another chain (its chain id differs from the configured one)."""

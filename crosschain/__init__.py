"""crosschain: the cross-chain formats, the xclient system contract and the relayer (issue 13)."""

from __future__ import annotations

from gmchain.contracts.framework import Registry, default_registry

__all__ = ["node_registry"]


def node_registry() -> Registry:
    """The contracts every node runs: the system contracts and xclient (docs/crosschain.md)."""
    from gmchain.crosschain.xclient import XClientContract  # xclient imports crosschain.packets

    return default_registry(extra=[XClientContract()])

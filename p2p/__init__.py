"""p2p: authenticated, encrypted transport between admitted gmchain nodes.

Rules kept here: the public surface is `P2PNetwork` plus its config and peer types; the
handshake (`p2p.handshake`), sealed frames (`p2p.session`), framing and limits are importable
for tests and tools but the node layer needs only what is exported below. The protocol is
specified in docs/p2p.md (SIGMA, Krawczyk 2003, with an SM2 KEM; SM4-GCM frames).
"""

from gmchain.p2p.config import ConfigError, NodeId, P2PConfig, PeerInfo, RemoteProtocolError
from gmchain.p2p.network import MessageHandler, P2PNetwork, PeerHandler

__all__ = [
    "ConfigError",
    "MessageHandler",
    "NodeId",
    "P2PConfig",
    "P2PNetwork",
    "PeerHandler",
    "PeerInfo",
    "RemoteProtocolError",
]

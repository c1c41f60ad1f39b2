"""gmchain: a permissioned BFT chain on SM2/SM3/SM4 for securities evidence and regulatory reports.

The one top-level import name of the distribution. Its subpackages are the repository's top-level
folders (``node/``, ``chain/``, ``consensus/``, ``p2p/``, ``ledger/``, ``crypto_sm/``,
``crosschain/``, ``contracts/``, ``bench/``), reached here through symbolic links so that the
source tree keeps the design card's layout while an installed copy adds only ``gmchain`` to
site-packages (docs/architecture.md, "Packages and the import name").
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

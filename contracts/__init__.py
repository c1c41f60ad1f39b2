"""Built-in system contracts: the framework, membership and evidence.

Rules: contract execution is deterministic (see `contracts.framework`); `contracts.evidence_data`
(SDK-side sealing of raw data, uses a CSPRNG) is deliberately not imported here.
"""

from gmchain.contracts.framework import (
    Arg,
    BadArguments,
    Context,
    Contract,
    ContractError,
    QueryContext,
    Registry,
    StateAccess,
    StateReader,
    UnknownContract,
    UnknownMethod,
    default_registry,
    error_text,
    method,
    query,
)
from gmchain.contracts.results import Shape

__all__ = [
    "Arg",
    "BadArguments",
    "Context",
    "Contract",
    "ContractError",
    "QueryContext",
    "Registry",
    "Shape",
    "StateAccess",
    "StateReader",
    "UnknownContract",
    "UnknownMethod",
    "default_registry",
    "error_text",
    "method",
    "query",
]

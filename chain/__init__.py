"""The chain library: genesis, block building, validation, execution, commit, light client.

It sits above `ledger`, `contracts` and `consensus` and below `node` (docs/architecture.md).
"""

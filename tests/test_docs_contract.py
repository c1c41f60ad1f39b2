"""The docs are a contract: they state things instead of deferring to the code, and what they
state about the dev chain (its passphrase, GMCHAIN_HOME, the files it writes) is what it does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gmchain.crypto_sm import load_private_key
from gmchain.node.config import load_genesis
from gmchain.node.daemon import init_dev
from gmchain.node.keys_cli import default_home, default_key_path, resolve_passphrase

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "docs" / "protocol.md.in", ROOT / "README.md"]

# Phrases that send a reader to the implementation instead of stating the rule.
_DEFERRING = re.compile(
    r"see (the )?(code|source|sources|daemon|implementation)\b"
    r"|(read|check|consult|look at) the (code|source|implementation)\b"
    r"|as (the code|the implementation) does"
    r"|defined (only )?in the (code|source)",
    re.I,
)


def deferring_phrases(text: str) -> list[str]:
    return [m.group(0) for m in _DEFERRING.finditer(" ".join(text.split()))]


def test_the_phrase_check_bites() -> None:
    assert deferring_phrases("its entries: see the\ncode") == ["see the code"]
    assert deferring_phrases("node metrics (see the daemon)") == ["see the daemon"]
    assert deferring_phrases("Read the source for the layout.") == ["Read the source"]
    assert deferring_phrases("the sources of GB/T 32918 say") == []


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_doc_defers_to_the_code(path: Path) -> None:
    assert deferring_phrases(path.read_text()) == [], f"{path.name} defers to the code"


def _documented_dev_passphrase() -> bytes:
    rpc = (ROOT / "docs" / "rpc.md").read_text()
    crypto = (ROOT / "docs" / "crypto.md").read_text()
    found = {m for doc in (rpc, crypto) for m in re.findall(r"dev passphrase \**`([^`]+)`", doc)}
    assert len(found) == 1, found  # both docs name one and the same passphrase
    return found.pop().encode()


def test_dev_chain_files_and_passphrase_are_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passphrase = _documented_dev_passphrase()
    home = tmp_path / "home"
    monkeypatch.setenv("GMCHAIN_HOME", str(home))
    assert default_home() == home and default_key_path() == home / "dev" / "client.key"
    init_dev(home / "dev", rpc_port=0, p2p_port=0)
    for name in ("node.key", "client.key", "genesis.json", "config.toml"):
        assert (home / "dev" / name).exists(), name
    client = load_private_key(home / "dev" / "client.key", passphrase)
    load_private_key(home / "dev" / "node.key", passphrase)
    genesis = load_genesis(home / "dev" / "genesis.json")
    assert (client.public_key.to_bytes(), "dev-org", "admin") in genesis.accounts
    # Unset or empty GMCHAIN_PASSPHRASE means the dev passphrase; GMCHAIN_HOME unset: ~/.gmchain.
    monkeypatch.setenv("GMCHAIN_PASSPHRASE", "")
    assert resolve_passphrase() == passphrase
    monkeypatch.delenv("GMCHAIN_HOME")
    assert default_home() == Path.home() / ".gmchain"
    monkeypatch.setenv("GMCHAIN_HOME", "")
    assert default_home() == Path.home() / ".gmchain"

"""Issue 14's first acceptance line: the scripted 4-site ceremony, with real processes.

scripts/ceremony_4sites.py makes four sites in separate folders with separately generated keys
(none copied), bound to 127.0.0.2-127.0.0.5 (P2P and RPC), TLS RPC and rpc_auth "reads", plus a
regulator account and a user of org1 and of org2; every site checks the same genesis hash; the
four nodes run as `gmchain node start` processes; org1's and org2's admins submit evidence; org1's
user reads org1's record and is refused org2's (-32012), the regulator reads both, and a client
without the CA file fails TLS verification. The refusals of each ceremony step are unit-tested in
tests/test_ceremony.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOSTS = [f"127.0.0.{i}" for i in range(2, 6)]


def _bindable(host: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, 0))
    except OSError:
        return False
    return True


def _port_free_everywhere(taken: set[int]) -> int:
    """A port that is free on all four addresses (each site binds the same port on its own)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOSTS[0], 0))
            port = s.getsockname()[1]
        if port in taken:
            continue
        socks = []
        try:
            for host in HOSTS:
                s = socket.socket()
                socks.append(s)
                s.bind((host, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return port
    raise AssertionError("no port free on all of 127.0.0.2-5")


@pytest.mark.timeout(900)
def test_four_sites_found_a_network_and_read_only_what_they_may(tmp_path: Path) -> None:
    if not _bindable("127.0.0.2"):
        pytest.skip("cannot bind 127.0.0.2: this system routes only 127.0.0.1 to loopback")
    p2p = _port_free_everywhere(set())
    rpc = _port_free_everywhere({p2p})
    work = tmp_path / "work"
    ports = ["--p2p-port", str(p2p), "--rpc-port", str(rpc), "--wait", "180"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "ceremony_4sites.py"), "--work", str(work), *ports],
        capture_output=True,
        text=True,
        timeout=850,
    )
    logs = "".join(
        f"\n--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
        for p in sorted(work.glob("site*/node.log"))
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:] + logs
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["private_keys"] == 15  # 4 x (node, admin, TLS) + 3 accounts
    assert summary["checks"] == [
        "every site checked the same genesis hash",
        "no private key in two folders",
        "four nodes answer over TLS on 127.0.0.2-5",
        "four nodes on the ceremony's genesis",
        "org1's and org2's admins submitted evidence",
        "org1's user reads org1's record and is refused org2's (-32012)",
        "the regulator reads both records",
        "a client without the CA file fails TLS verification",
    ]
    # Each site's node bound its own address, as the ceremony said.
    for i, host in enumerate(HOSTS, 1):
        config = (work / f"site{i}" / "config.toml").read_text()
        assert f'p2p_host = "{host}"' in config and f'rpc_host = "{host}"' in config

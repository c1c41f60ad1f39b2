"""The container image and the compose file of a four-site network (issue 14 item 5;
deploy/container/, docs/ops.md "Container image").

Static checks (always run):
1. compose.yaml: four validator sites of four orgs and a regulator account, each its own service
   with its own private volume; every passphrase comes from a required environment variable (no
   default, so no public passphrase); the coordinator waits for exactly those sites and accounts.
2. The Containerfile: a non-root USER, the data VOLUME, a HEALTHCHECK, bookworm as the base, the
   wheel installed with --no-index; the role and health scripts parse (sh -n, compile).

The drill (podman and podman-compose; skipped, saying why, where either is missing):
3. The image is built from this checkout (deploy/container/build.sh after `make wheelhouse`) on a
   bookworm base: $GMCHAIN_CONTAINER_BASE, else a local localhost/debian:bookworm-minbase, else
   one made by debootstrap (Debian's packages). It runs as uid 10001, not root, and its
   `gmchain --version` names this checkout's commit and the OpenSSL it loaded.
4. `podman-compose -f compose.yaml up` runs the ceremony inside the containers, on the
   project's own network (network namespaces this test makes), and starts four nodes; all four
   become healthy by the image's own HEALTHCHECK (`podman healthcheck run`), commit blocks,
   agree on the block hashes and on the genesis hash, and each site's private keys are in its
   own volume only (no key file, no key's bytes in any other volume). Heights and hashes are
   asked over TLS from inside each site's container, by service name, after three evidence
   records submitted over TLS from inside site1 (with its own admin key) committed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gmchain

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "deploy" / "container"
COMPOSE = HERE / "compose.yaml"
SITES = ["site1", "site2", "site3", "site4"]
IMAGE = f"localhost/gmchain:{gmchain.__version__}"


# --- static checks --------------------------------------------------------------------------------


def _services(text: str) -> dict[str, str]:
    """Service name -> its block of compose.yaml (top-level `services:` entries)."""
    body = text.split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0]
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=  [a-z0-9-]+:\n)", "\n" + body):
        m = re.match(r"\n?  ([a-z0-9-]+):\n", block)
        if m:
            out[m.group(1)] = block
    return out


def test_compose_has_four_sites_and_a_regulator_each_with_its_own_volume() -> None:
    services = _services(COMPOSE.read_text())
    assert set(services) == {*SITES, "regulator", "coordinator"}
    private: dict[str, str] = {}
    for name, block in services.items():
        (volumes,) = re.findall(r"volumes: \[(.*)\]", block)
        mounts = dict(v.strip(' "').split(":")[::-1] for v in volumes.split(","))
        assert mounts["/ceremony"] == "ceremony", name  # public files only
        volume = mounts["/var/lib/gmchain"]
        assert volume not in private.values(), f"{name} shares {volume}"
        private[name] = volume
    orgs = set()
    for i, site in enumerate(SITES, 1):
        block = services[site]
        assert f"SITE_NAME: {site}\n" in block and f"SITE_P2P: {site}:30300" in block
        orgs.add(re.search(r"SITE_ORG: (\S+)", block).group(1))  # type: ignore[union-attr]
        for var in ("GMCHAIN_NODE_PASSPHRASE", "GMCHAIN_PASSPHRASE"):
            value = re.search(rf"{var}: (\S+)", block).group(1)  # type: ignore[union-attr]
            assert re.fullmatch(rf"\$\{{SITE{i}_[A-Z_]+:\?.*", value), (site, value)
    assert orgs == {"org1", "org2", "org3", "org4"}
    assert "ACCOUNT_ROLE: regulator" in services["regulator"]
    assert "REGULATOR_PASSPHRASE:?" in services["regulator"]
    coord = services["coordinator"]
    assert re.search(r"SITES: (.*)", coord).group(1).split() == SITES  # type: ignore[union-attr]
    assert re.search(r"ACCOUNTS: (.*)", coord).group(1).split() == ["regulator"]  # type: ignore[union-attr]
    assert "PASSPHRASE" not in coord  # the coordinator holds no key


def test_containerfile_is_non_root_with_volume_and_healthcheck() -> None:
    text = (HERE / "Containerfile").read_text()
    assert "ARG BASE=docker.io/library/debian:bookworm-slim" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert 'VOLUME ["/var/lib/gmchain"]' in text
    assert re.search(r"^HEALTHCHECK .*\n.*gmchain-healthcheck", text, re.M)
    installs = re.findall(r"pip install [^\n]*", text)
    assert len(installs) == 2 and all("--no-index" in i for i in installs)  # nothing from an index
    assert "libleveldb1d" in text
    for script in ("gmchain-site", "gmchain-healthcheck"):
        assert f"deploy/container/{script}" in text
        assert f"!deploy/container/{script}" in (ROOT / ".dockerignore").read_text()
    subprocess.run(["sh", "-n", str(HERE / "gmchain-site")], check=True, timeout=30)
    compile((HERE / "gmchain-healthcheck").read_text(), "gmchain-healthcheck", "exec")


# --- the drill ------------------------------------------------------------------------------------

PODMAN = shutil.which("podman")
COMPOSE_TOOL = shutil.which("podman-compose")
needs_podman = pytest.mark.skipif(
    PODMAN is None or COMPOSE_TOOL is None,
    reason="podman and podman-compose are not installed (Debian: apt-get install podman "
    "podman-compose runc); `docker compose` runs the same files",
)


def _engine_env(tmp: Path) -> dict[str, str]:
    """podman's settings for this machine: descriptor and process limits within the hard
    limits we have (podman's defaults exceed them in a sandbox), runc where installed (crun
    refuses hybrid cgroups), and an image store of the test's own unless one is configured."""
    import resource

    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = 4096 if nproc == resource.RLIM_INFINITY else min(4096, nproc)
        conf = tmp / "containers.conf"
        runtime = 'runtime = "runc"\n' if shutil.which("runc") else ""
        conf.write_text(
            "[containers]\n"
            f'default_ulimits = ["nofile=8192:8192", "nproc={nproc}:{nproc}"]\n'
            f'[engine]\n{runtime}cgroup_manager = "cgroupfs"\n'
        )
        env["CONTAINERS_CONF"] = str(conf)
    if "CONTAINERS_STORAGE_CONF" not in env:
        store = Path(env.get("GMCHAIN_CONTAINER_STORE", "/var/tmp/gmchain-containers"))
        conf = tmp / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{store}/run"\ngraphroot = "{store}/root"\n'
        )
        env["CONTAINERS_STORAGE_CONF"] = str(conf)
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float, **kw: Any) -> str:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, f"{argv}: {out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def _base_image(env: dict[str, str]) -> list[str]:
    """build.sh's base options (docstring point 3), or skip."""
    assert PODMAN is not None
    if env.get("GMCHAIN_CONTAINER_BASE"):
        return ["--base", env["GMCHAIN_CONTAINER_BASE"]]
    local = "localhost/debian:bookworm-minbase"
    if subprocess.run([PODMAN, "image", "exists", local], env=env, timeout=60).returncode == 0:
        return ["--base", local]
    if shutil.which("debootstrap") is None:
        pytest.skip("no bookworm base image and no debootstrap to make one")
    return ["--debootstrap", env.get("GMCHAIN_ROOTFS", "/var/tmp/gmchain-bookworm-rootfs")]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point 3: the image, built from this checkout."""
    assert PODMAN is not None
    env = _engine_env(tmp_path_factory.mktemp("podman"))
    bindir = Path(sys.executable).parent
    _run(["make", "-C", str(ROOT), "wheelhouse", f"BIN={bindir}", "STAMP=pyproject.toml"],
         env, 600)  # fmt: skip
    _run([str(HERE / "build.sh"), *_base_image(env), "--tag", IMAGE], env, 2400)
    yield env


_PROBE = """
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="/var/lib/gmchain/site/tls/rpc.crt")
def call(method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(sys.argv[1], data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=10, context=ctx) as answer:
        return json.loads(answer.read())["result"]
height = call("gm_status", [])["height"]
block = call("gm_getBlockByNumber", [2, False]) if height >= 2 else None
print(json.dumps({"height": height, "hash2": block and block["hash"]}))
"""


def _probe(env: dict[str, str], container: str, site: str) -> dict[str, Any]:
    """gm_status and block 2's hash, asked from inside the site's container over TLS, by the
    site's service name (the name its certificate holds)."""
    assert PODMAN is not None
    out = _run([PODMAN, "exec", container, "/opt/gmchain/bin/python", "-c", _PROBE,
                f"https://{site}:8545/"], env, 120)  # fmt: skip
    return json.loads(out)  # type: ignore[no-any-return]


@needs_podman
@pytest.mark.slow
def test_image_runs_as_non_root_and_reports_its_build(engine: dict[str, str]) -> None:
    assert PODMAN is not None
    image = json.loads(_run([PODMAN, "image", "inspect", IMAGE], engine, 120))[0]
    info = image["Config"]
    assert info["User"] == "gmchain"
    assert "/var/lib/gmchain" in info["Volumes"]
    # podman shows the docker format's health check beside Config (docker: inside it)
    health = info.get("Healthcheck") or image["Healthcheck"]
    assert "/usr/local/bin/gmchain-healthcheck" in health["Test"]
    uid = _run([PODMAN, "run", "--rm", "--entrypoint", "id", IMAGE, "-u"], engine, 300).strip()
    assert uid == "10001"
    version = _run([PODMAN, "run", "--rm", IMAGE, "--version"], engine, 300).splitlines()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    assert version[0] == f"gmchain {gmchain.__version__}"
    if head:
        assert version[1] == f"commit: {head}"
    assert version[3].startswith("sm2 backend: openssl (OpenSSL 3.")


@needs_podman
@pytest.mark.slow
def test_compose_runs_a_four_site_network(engine: dict[str, str], tmp_path: Path) -> None:
    assert PODMAN is not None and COMPOSE_TOOL is not None
    project = f"gmtest{os.getpid()}"
    env = dict(engine, GMCHAIN_IMAGE=IMAGE, CHAIN_ID=f"compose-{project}")
    env["REGULATOR_PASSPHRASE"] = "regulator-secret-1"
    for i in range(1, 5):
        env[f"SITE{i}_NODE_PASSPHRASE"] = f"site{i}-node-secret"
        env[f"SITE{i}_ADMIN_PASSPHRASE"] = f"site{i}-admin-secret"
    compose = [COMPOSE_TOOL, "-p", project, "-f", str(COMPOSE)]
    try:
        _run([*compose, "up", "-d"], env, 900)
        _check_network(env, project)
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, timeout=600)
        names = [f"{project}_{n}-data" for n in (*SITES, "regulator", "coordinator")]
        subprocess.run([PODMAN, "volume", "rm", "-f", *names, f"{project}_ceremony"], env=env,
                       capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([PODMAN, "network", "rm", "-f", f"{project}_default"], env=env,
                       capture_output=True, timeout=120)  # fmt: skip


def _volume(env: dict[str, str], project: str, name: str) -> Path:
    assert PODMAN is not None
    out = _run([PODMAN, "volume", "inspect", f"{project}_{name}"], env, 60)
    return Path(json.loads(out)[0]["Mountpoint"])


def _check_network(env: dict[str, str], project: str) -> None:
    assert PODMAN is not None
    containers = {s: f"{project}_{s}_1" for s in SITES}
    # every node healthy by the image's HEALTHCHECK (the ceremony runs first: allow for it)
    deadline = time.monotonic() + 600
    pending = set(SITES)
    while pending and time.monotonic() < deadline:
        for site in sorted(pending):
            check = subprocess.run([PODMAN, "healthcheck", "run", containers[site]], env=env,
                                   capture_output=True, text=True, timeout=60)  # fmt: skip
            if check.returncode == 0:
                pending.discard(site)
        time.sleep(3)
    if pending:
        logs = {s: _run([PODMAN, "logs", containers[s]], env, 60)[-3000:] for s in pending}
        raise AssertionError(f"not healthy: {sorted(pending)}: {logs}")
    # three evidence records over TLS, from inside site1 with site1's admin key (never copied
    # out), each awaited: blocks are made for transactions, so heights reach 3
    for n in range(1, 4):
        # rpc_auth = "reads": awaiting the receipt is a read of org1's data, so log in as
        # org1's admin; the site's own certificate is the CA file
        out = _run([PODMAN, "exec", containers["site1"], "gmchain", "evidence", "submit",
                    "--rpc", "https://site1:8545", "--ca-file", "/var/lib/gmchain/site/tls/rpc.crt",
                    "--auth-key", "/var/lib/gmchain/site/admin.key",
                    "--key", "/var/lib/gmchain/site/admin.key",
                    "--id", f"rec-c{n}", "--flow", f"flow-c{n}", "--step", "kyc",
                    "--data", f"hello {n}", "--prev", "none", "--json"], env, 180)  # fmt: skip
        receipt = json.loads(out)  # a failed transaction exits 1 (_run fails)
        assert int(receipt.get("blockNumber", receipt.get("height", 0))) >= 1, out
    # the four commit the same blocks
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        probes = [_probe(env, containers[s], s) for s in SITES]
        if min(p["height"] for p in probes) >= 3:
            break
        time.sleep(2)
    assert min(p["height"] for p in probes) >= 3, probes
    assert len({p["hash2"] for p in probes}) == 1, probes
    # the genesis every site installed is the announced one
    ceremony = _volume(env, project, "ceremony")
    announced = (ceremony / "out" / "genesis.hash").read_text().strip()
    genesis = json.loads((ceremony / "out" / "genesis.json").read_text())
    regulator = json.loads((ceremony / "inbox" / "regulator-account.json").read_text())
    pubkey = regulator["pubkey"].removeprefix("0x")  # genesis.json writes keys without 0x
    assert regulator["role"] == "regulator" and pubkey in json.dumps(genesis)
    for site in SITES:
        installed = _volume(env, project, f"{site}-data") / "site" / "genesis.json"
        assert installed.read_bytes() == (ceremony / "out" / "genesis.json").read_bytes()
    assert re.fullmatch(r"(0x)?[0-9a-f]{64}", announced)
    # private keys: each in its own volume only
    volumes = {n: _volume(env, project, f"{n}-data") for n in (*SITES, "regulator", "coordinator")}
    volumes["ceremony"] = ceremony
    for owner, root in volumes.items():
        for key in root.rglob("*.key"):
            secret = key.read_bytes()
            for other, other_root in volumes.items():
                if other == owner:
                    continue
                for f in other_root.rglob("*"):
                    if f.is_file():
                        assert f.suffix != ".key" or f.read_bytes() != secret, (key, f)
                        assert secret not in f.read_bytes(), (key, f)
    assert not list(ceremony.rglob("*.key")) and not list(volumes["coordinator"].rglob("*.key"))
    for site in SITES:
        assert {p.name for p in (volumes[site] / "site").glob("*.key")} == {"node.key", "admin.key"}

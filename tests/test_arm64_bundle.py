"""The aarch64 bundle's build inputs (deploy/arm64/), its launcher's libcrypto policy, and, when a
bundle was built (`make arm64`), its manifest. Fast: nothing here is emulated or downloaded.

docs/deploy-arm64.md describes the bundle; these tests keep the pins, the scripts and the
Makefile targets it names in the state it describes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import gmchain
from gmchain.crypto_sm import sm3_hash

ROOT = Path(__file__).resolve().parent.parent
ARM = ROOT / "deploy" / "arm64"
HASH = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+) --hash=sha256:([0-9a-f]{64})$")
BUNDLE = ROOT / "dist" / f"gmchain-{gmchain.__version__}-linux-aarch64.tar.gz"
# The node extra minus matplotlib: nothing imports it (bench/svg.py draws the charts).
NOT_BUNDLED = {"matplotlib"}


def _pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ARM / name).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = HASH.match(line)
        assert match, f"{name}: not pinned with a sha256 hash: {line!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_scripts_exist_and_parse() -> None:
    for script in ("build.sh", "test.sh", "fetch_libcrypto11.sh", "launcher/python3"):
        path = ARM / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(["sh", "-n", str(ARM / "launcher" / "gmchain")], capture_output=True)
    assert proc.returncode == 0


def test_remove_root_is_shared_and_removes_an_unmounted_tree(tmp_path: Path) -> None:
    """common.sh rule M1: build.sh and test.sh source the one remove_root; on a tree with
    nothing mounted in it, it deletes the tree."""
    for script in ("build.sh", "test.sh"):
        text = (ARM / script).read_text()
        assert '. "$HERE/common.sh"' in text, script
        assert "remove_root() {" not in text, f"{script} defines its own remove_root"
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    proc = subprocess.run(
        ["bash", "-c", f'. "{ARM / "common.sh"}"; remove_root "{root}"'],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert not root.exists()


def _debian() -> dict[str, tuple[str, str]]:
    rows = [
        line.split()
        for line in (ARM / "debian-pins.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(len(row) == 3 and row[2] in ("include", "bundled") for row in rows), rows
    return {row[0]: (row[1], row[2]) for row in rows}


def test_bundle_pins_cover_every_runtime_dependency() -> None:
    wheels = _pins("requirements-aarch64.txt")
    assert "plyvel" not in wheels, "plyvel is Debian's python3-plyvel (stage.py rule S1)"
    debian = _debian()
    # Debian's version 1.5.0-1+b2 is upstream 1.5.0.
    pins = wheels | {"plyvel": debian["python3-plyvel"][0].split("-")[0]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = [Requirement(r) for r in project["dependencies"]]
    needed += [Requirement(r) for r in project["optional-dependencies"]["node"]]
    for req in needed:
        name = req.name.lower().replace("_", "-")
        if name in NOT_BUNDLED:
            assert name not in pins
            continue
        assert name in pins, f"{name} (pyproject) has no aarch64 pin"
        assert req.specifier.contains(Version(pins[name])), f"{name}=={pins[name]} vs {req}"


def test_test_wheels_are_separate_from_the_bundle() -> None:
    tests = _pins("requirements-test-aarch64.txt")
    assert {"pytest", "gmssl", "hypothesis", "jsonschema"} <= set(tests)
    assert not set(tests) & set(_pins("requirements-aarch64.txt")) - {"attrs"}


def test_debian_pins_and_fetch_pins() -> None:
    debian = _debian()
    includes = {name for name, (_, kind) in debian.items() if kind == "include"}
    assert {"python3.11", "python3-plyvel"} <= includes
    # What the bundle carries from Debian is pinned too: glibc, LevelDB, OpenSSL 3.
    assert {"libc6", "libleveldb1d", "libssl3"} <= set(debian)
    fetch = (ARM / "fetch_libcrypto11.sh").read_text()
    assert len(re.findall(r"SHA256=[0-9a-f]{64}", fetch)) == 2  # amd64 and arm64
    assert 'VERSION="1.1.1w-0+deb11u1"' in fetch


def test_make_targets_exist_and_stay_out_of_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\narm64: $(STAMP)\n\tbash deploy/arm64/build.sh\n" in makefile
    assert "\narm64-test: $(STAMP)\n\tbash deploy/arm64/test.sh\n" in makefile
    test_rule = re.search(r"^test:.*$", makefile, re.M)
    assert test_rule and "arm64" not in test_rule.group(0)


def _fake_bundle(tmp_path: Path) -> Path:
    """The launcher in a bundle whose 'loader' is a script printing what it was given."""
    bundle = tmp_path / "bundle"
    (bundle / "bin").mkdir(parents=True)
    (bundle / "runtime" / "lib").mkdir(parents=True)
    launcher = (ARM / "launcher" / "python3").read_text()
    (bundle / "bin" / "python3").write_text(launcher)
    (bundle / "bin" / "python3").chmod(0o755)
    loader = bundle / "runtime" / "lib" / "ld-linux-aarch64.so.1"
    loader.write_text(
        '#!/bin/sh\necho "LIBCRYPTO=${GMCHAIN_LIBCRYPTO:-}"\necho "HOME=$PYTHONHOME"\n'
        'echo "PATHSET=${PYTHONPATH+yes}"\nfor a in "$@"; do echo "ARG=$a"; done\n'
    )
    loader.chmod(0o755)
    return bundle


def _launch(bundle: Path, **env: str) -> list[str]:
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": "/host/site"}
    proc = subprocess.run(
        [str(bundle / "bin" / "python3"), "-c", "pass"],
        env=base | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.splitlines()


def test_launcher_libcrypto_policy(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path)
    real = str(bundle.resolve())
    # The operator's choice wins.
    out = _launch(bundle, GMCHAIN_LIBCRYPTO="/opt/gm/libcrypto.so.1.1")
    assert "LIBCRYPTO=/opt/gm/libcrypto.so.1.1" in out
    # The bundled OpenSSL 3 only when asked for.
    out = _launch(bundle, GMCHAIN_BUNDLED_LIBCRYPTO="1")
    assert f"LIBCRYPTO={real}/runtime/ssl3/libcrypto.so.3" in out
    # Otherwise a host library from the launcher's list, or nothing (never the bundled one).
    chosen = _launch(bundle)[0].removeprefix("LIBCRYPTO=")
    assert "runtime/ssl3" not in chosen
    assert chosen == "" or (Path(chosen).is_file() and "libcrypto.so." in chosen)
    # The loader gets the library path and argv0; the host's PYTHONPATH is not read.
    out = _launch(bundle)
    assert f"HOME={real}" in out and "PATHSET=" in out
    args = [line.removeprefix("ARG=") for line in out if line.startswith("ARG=")]
    assert args[:5] == [
        "--library-path",
        f"{real}/runtime/lib",
        "--argv0",
        f"{real}/bin/python3",
        f"{real}/runtime/python3.11",
    ]
    assert args[5:] == ["-c", "pass"]


@pytest.mark.skipif(not BUNDLE.is_file(), reason=f"no built bundle at {BUNDLE} (make arm64)")
def test_built_bundle_manifest_matches_its_files() -> None:
    name = BUNDLE.name.removesuffix(".tar.gz")
    files: dict[str, bytes] = {}
    with tarfile.open(BUNDLE) as tar:
        for member in tar:
            assert member.name == name or member.name.startswith(name + "/"), member.name
            assert member.uid == 0 and member.gid == 0
            if member.isfile():
                data = tar.extractfile(member)
                assert data is not None
                files[member.name.removeprefix(name + "/")] = data.read()
    manifest = files.pop("MANIFEST.sm3").decode().splitlines()
    listed = {}
    for line in manifest:
        digest, _, path = line.partition("  ")
        listed[path] = digest
    assert listed.keys() == files.keys()
    bad = [p for p, data in files.items() if sm3_hash(data).hex() != listed[p]]
    assert not bad, bad[:10]
    info = json.loads(files["BUILDINFO.json"])
    assert info["version"] == gmchain.__version__
    assert set(_pins("requirements-aarch64.txt")) <= {
        n.split("-")[0].lower().replace("_", "-") for n in info["inputs_sha256"]
    }
    for must in ("bin/gmchain", "bin/python3", "runtime/python3.11", "runtime/lib/libc.so.6",
                 "runtime/lib/ld-linux-aarch64.so.1", "runtime/ssl3/libcrypto.so.3"):  # fmt: skip
        assert must in files, must
    assert not [p for p in files if p.startswith("runtime/lib/libcrypto")]

"""deploy/systemd/gmchain-node.service (issue 14 items 3 and 5): hardened, restarts on failure,
enough descriptors for the node's connection limits, and accepted by systemd; and the
relayer's unit gmchain-relay.service (hardened alike, an ExecStart the CLI accepts), the system
user (gmchain.sysusers.conf) and folders (gmchain.tmpfiles.conf), applied to a scratch root.

`systemd-analyze verify` runs on a copy whose ExecStart names this checkout's `gmchain` (verify
insists that the binary exists; /opt/gmchain is where the unit expects an installation). It
exits 0 even for unknown keys and unparsable values, so any line it prints fails the test. Where
systemd-analyze is absent that check is skipped and the parsed checks below still run.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from gmchain.node.cli import build_parser
from gmchain.node.config import NodeConfig

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "gmchain-node.service"
INSTALLED = "/opt/gmchain/bin/gmchain"


def _unit() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value it is given (systemd keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def _default(name: str) -> int:
    f = next(f for f in fields(NodeConfig) if f.name == name)
    assert isinstance(f.default, int)
    return f.default


def test_the_unit_has_the_required_hardening_and_limits() -> None:
    unit = _unit()
    svc = {k: v[-1] for k, v in unit["Service"].items()}
    assert svc["NoNewPrivileges"] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["Restart"] == "on-failure"
    assert svc["User"] and svc["User"] != "root"
    # the node's descriptor need (node/rpclimits.py; docs/ops.md rpc_fd_reserve)
    need = _default("rpc_fd_reserve") + _default("rpc_max_connections")
    assert int(svc["LimitNOFILE"]) >= need, (svc["LimitNOFILE"], need)
    # the data dir is writable, nothing else
    state = f"/var/lib/{svc['StateDirectory']}"
    writable = svc["ReadWritePaths"].split()
    assert state in writable and f"/var/log/{svc['LogsDirectory']}" in writable
    assert svc["CapabilityBoundingSet"] == ""
    assert svc["ExecReload"].endswith("-HUP $MAINPID")  # reopens the log file
    assert "WantedBy" in unit["Install"]


def test_the_unit_starts_the_node_with_options_the_cli_accepts() -> None:
    argv = shlex.split(_unit()["Service"]["ExecStart"][-1])
    assert argv[0] == INSTALLED and argv[1:3] == ["node", "start"]
    args = build_parser().parse_args(argv[1:])
    assert args.config == "/etc/gmchain/node.toml"
    assert args.log_format == "json" and args.log_file.startswith("/var/log/gmchain/")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (the parsed checks above still run)")
    gmchain = ROOT / ".venv" / "bin" / "gmchain"
    assert gmchain.exists()
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(gmchain)))
    out = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    printed = (out.stdout + out.stderr).strip()
    assert out.returncode == 0 and not printed, printed


def test_configparser_reads_the_unit() -> None:
    """The unit is plain INI apart from repeated keys (a last check of its syntax)."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    assert cp.sections() == ["Unit", "Service", "Install"]


LOGROTATE = ROOT / "deploy" / "logrotate" / "gmchain-node"


def test_logrotate_config_reopens_the_units_log(tmp_path: Path) -> None:
    text = LOGROTATE.read_text()
    log_file = shlex.split(_unit()["Service"]["ExecStart"][-1])[-1]
    assert text.count(str(Path(log_file).parent) + "/*.log {") == 1
    assert f"--signal=HUP --kill-whom=main {UNIT.name}" in text
    tool = shutil.which("logrotate")
    if tool is None:
        pytest.skip("logrotate is not installed (Debian: apt-get install logrotate)")
    out = subprocess.run(
        [tool, "-d", "-s", str(tmp_path / "state"), str(LOGROTATE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    printed = out.stdout + out.stderr
    assert out.returncode == 0 and "error" not in printed.lower(), printed


# --- the relayer's unit, the system user and the folders (issue 14 item 5) ----------------------

RELAY = ROOT / "deploy" / "systemd" / "gmchain-relay.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "gmchain.sysusers.conf"
TMPFILES = ROOT / "deploy" / "systemd" / "gmchain.tmpfiles.conf"


def _relay() -> dict[str, str]:
    out: dict[str, str] = {}
    section = ""
    for raw in RELAY.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#") and section == "Service":
            key, _, value = line.partition("=")
            out[key] = value  # the last of a repeated key
    return out


def test_the_relay_unit_is_hardened_like_the_node_unit() -> None:
    relay, node = _relay(), {k: v[-1] for k, v in _unit()["Service"].items()}
    assert relay["User"] == node["User"] and relay["Restart"] == "on-failure"
    for key in ("NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet", "SystemCallFilter",
                "RestrictAddressFamilies", "PrivateDevices", "ProtectHome"):  # fmt: skip
        assert relay[key] == node[key], key
    assert "ReadWritePaths" not in relay and "StateDirectory" not in relay  # keeps no state
    # the relayer awaits its cycle's receipts on SIGTERM (--tx-timeout, default 60 s)
    assert int(relay["TimeoutStopSec"]) > 60


def test_the_relay_unit_starts_the_relayer_with_options_the_cli_accepts() -> None:
    line = _relay()["ExecStart"]
    env = {"GMCHAIN_RELAY_BUSINESS": "https://b:8545", "GMCHAIN_RELAY_REGULATOR": "https://r:8545"}
    for name, value in env.items():
        line = line.replace("${" + name + "}", value)
    argv = shlex.split(line.replace("$GMCHAIN_RELAY_OPTS", "--interval 5"))
    assert argv[0] == INSTALLED and argv[1] == "relay"
    args = build_parser().parse_args(argv[1:])
    assert (args.business, args.regulator) == ("https://b:8545", "https://r:8545")
    assert args.passphrase_env == "GMCHAIN_RELAY_PASSPHRASE" and args.interval == 5.0
    assert args.log_format == "json" and args.metrics_port == 9465
    # every ${VAR} the line uses is documented in the unit's header
    header = RELAY.read_text().split("[Unit]")[0]
    for name in (*env, "GMCHAIN_RELAY_PASSPHRASE", "GMCHAIN_RELAY_OPTS"):
        assert f"{name}=" in header, name


def test_systemd_analyze_verify_accepts_the_relay_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / RELAY.name
    copy.write_text(RELAY.read_text().replace(INSTALLED, str(ROOT / ".venv" / "bin" / "gmchain")))
    out = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    printed = (out.stdout + out.stderr).strip()
    assert out.returncode == 0 and not printed, printed


def test_sysusers_and_tmpfiles_make_the_user_and_folders(tmp_path: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers / systemd-tmpfiles are not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for tool, conf, extra in ((sysusers, SYSUSERS, []), (tmpfiles, TMPFILES, ["--create"])):
        out = subprocess.run(
            [tool, f"--root={root}", *extra, "-"],
            input=conf.read_text(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    user = next(
        x for x in (root / "etc/passwd").read_text().splitlines() if x.startswith("gmchain:")
    )
    _, _, uid, gid, _, home, shell = user.split(":")
    assert home == "/var/lib/gmchain" and shell == "/usr/sbin/nologin"
    want = {"etc/gmchain": (0o750, 0), "var/lib/gmchain": (0o700, int(uid)),
            "var/log/gmchain": (0o750, int(uid))}  # fmt: skip
    for folder, (mode, owner) in want.items():
        st = (root / folder).stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, owner, int(gid)), folder
    # the units run as the user sysusers creates
    assert _relay()["User"] == _unit()["Service"]["User"][-1] == "gmchain"

"""The command line about itself (issue 14 item 3; node/cli_meta.py): help and defaults on every
option, `gmchain --version`, and shell completion loaded into a real bash (and zsh where present).

1. Every option and argument of every (sub)command of build_parser() has help text, and the help
   shown for an option with a default states it: the word "default" and, for a value default,
   the value itself (10.0 may be shown as 10) or a described default ("default: ask once").
2. `gmchain --version` prints the version, the commit this checkout is at, the Python version,
   and the SM2 backend with the exact libcrypto version text the backend loaded.
3. `gmchain completion bash` sourced into bash completes a subcommand, a nested subcommand, an
   option of a nested command, an option's choices, and a file after an option taking a value.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gmchain
from gmchain.node.cli import build_parser
from gmchain.node.cli_meta import completion_script, states_default, walk_parsers

ROOT = Path(__file__).resolve().parent.parent
GMCHAIN = [sys.executable, "-m", "gmchain.node.cli"]


def _shown(value: object) -> set[str]:
    out = {str(value)}
    if isinstance(value, float) and value.is_integer():
        out.add(str(int(value)))
    return out


def test_every_option_has_help_that_states_its_default() -> None:
    problems: list[str] = []
    parsers = list(walk_parsers(build_parser()))
    assert len(parsers) > 30  # the walk reaches the nested commands (gov, xc, node, ...)
    paths = {p for p, _ in parsers}
    assert {("cluster", "init"), ("platform", "up")} <= paths  # and the delegated tools
    for path, parser in parsers:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            where = " ".join(("gmchain", *path, "/".join(action.option_strings) or action.dest))
            if not action.help or action.help is argparse.SUPPRESS:
                problems.append(f"{where}: no help")
                continue
            if not states_default(action):
                continue
            text = formatter._expand_help(action)
            if "default" not in text.lower():
                problems.append(f"{where}: help does not state the default {action.default!r}")
            elif not any(v in text for v in _shown(action.default)) and not re.search(
                r"default:? [a-z$]", text
            ):
                problems.append(f"{where}: help names no default value: {text!r}")
    assert not problems, "\n".join(problems)


def test_the_check_above_can_fail() -> None:
    """A parser with an option lacking help, and one whose default is not shown, both fail."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--bare")
    p.add_argument("--port", type=int, default=7, help="a port")
    bare, port = p._actions
    assert not bare.help
    assert states_default(port) and "7" not in p._get_formatter()._expand_help(port)


def test_help_output_shows_defaults() -> None:
    out = subprocess.run(
        [*GMCHAIN, "relay", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "(default: 2.0)" in out and "(default: 127.0.0.1)" in out, out


def test_version_prints_version_commit_and_sm2_backend() -> None:
    from gmchain.crypto_sm.backend import active_backend

    env = {k: v for k, v in __import__("os").environ.items() if k != "GMCHAIN_COMMIT"}
    out = subprocess.run(
        [*GMCHAIN, "--version"], capture_output=True, text=True, timeout=60, check=True, env=env
    ).stdout
    lines = out.splitlines()
    assert lines[0] == f"gmchain {gmchain.__version__}"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        head = subprocess.run(
            [git, "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert fields["commit"] == head
    assert fields["python"].startswith(".".join(map(str, sys.version_info[:3])))
    backend = active_backend()
    assert fields["sm2 backend"].startswith(backend.name)
    if backend.name == "openssl":
        version_text = backend.version_text  # type: ignore[attr-defined]
        assert f"({version_text})" in fields["sm2 backend"] and "OpenSSL" in version_text


def test_version_commit_override(tmp_path: Path) -> None:
    env = dict(__import__("os").environ, GMCHAIN_COMMIT="0123456789ab")
    out = subprocess.run(
        [*GMCHAIN, "--version"], capture_output=True, text=True, timeout=60, check=True, env=env
    ).stdout
    assert "commit: 0123456789ab\n" in out


# --- completion ----------------------------------------------------------------------------------


def _complete(shell_script: str, words: list[str], shell: str = "bash") -> list[str]:
    """COMPREPLY of the completion function for the command line `words` (the last word is the
    one being completed), in a real shell that sourced the script."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    program = (
        f"source {shell_script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMP_LINE='{' '.join(words)}'\n"
        "_gmchain\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    tool = shutil.which(shell)
    assert tool is not None
    argv = [tool, "-c", program] if shell == "bash" else [tool, "-f", "-c", program]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("completion") / "gmchain.bash"
    out = subprocess.run(
        [*GMCHAIN, "completion", "bash"], capture_output=True, text=True, timeout=60, check=True
    )
    path.write_text(out.stdout)
    return str(path)


def test_bash_completes_subcommands_and_options(bash_script: str, tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert _complete(bash_script, ["gmchain", "no"]) == ["node"]
    assert set(_complete(bash_script, ["gmchain", ""])) >= {"node", "evidence", "completion"}
    assert _complete(bash_script, ["gmchain", "node", "st"]) == ["start"]
    assert _complete(bash_script, ["gmchain", "node", "start", "--con"]) == ["--config"]
    # an option's value is skipped when finding the command path
    assert _complete(bash_script, ["gmchain", "gov", "--bogus", "vo"]) == ["vote"]
    assert _complete(bash_script, ["gmchain", "relay", "--log-format", ""]) == ["text", "json"]
    assert _complete(bash_script, ["gmchain", "completion", "z"]) == ["zsh"]
    # a delegated tool completes through its own parser (cli_meta.DELEGATED)
    assert _complete(bash_script, ["gmchain", "cluster", "add"]) == ["add-node"]
    assert _complete(bash_script, ["gmchain", "cluster", "init", "--base-r"]) == ["--base-rpc"]
    (tmp_path / "node.toml").write_text("")
    got = _complete(bash_script, ["gmchain", "node", "start", "--config", f"{tmp_path}/no"])
    assert got == [f"{tmp_path}/node.toml"]
    # and `complete` registered the function for the command
    shown = subprocess.run(
        ["bash", "-c", f"source {bash_script}; complete -p gmchain"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert shown.strip() == "complete -F _gmchain gmchain"


def test_completion_lists_every_subcommand_of_the_parser() -> None:
    script = completion_script(build_parser(), "bash")
    for path, parser in walk_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                key = " ".join(("gmchain", *path))
                line = next(x for x in script.splitlines() if x.startswith(f"    ['{key}']="))
                for name in action.choices:
                    assert name in line.split("=", 1)[1], (key, name)


def test_zsh_completes_through_bashcompinit(tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (Debian: apt-get install zsh)")
    path = tmp_path / "_gmchain"
    out = subprocess.run(
        [*GMCHAIN, "completion", "zsh"], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("#compdef gmchain\n")
    path.write_text(out.stdout)

    def complete(words: list[str]) -> list[str]:
        # bashcompinit's compgen leaves the prefix match to zsh's compadd: done here
        return [w for w in _complete(str(path), words, shell="zsh") if w.startswith(words[-1])]

    assert complete(["gmchain", "node", "st"]) == ["start"]
    assert complete(["gmchain", "relay", "--log-f"]) == ["--log-format"]
    assert complete(["gmchain", "relay", "--log-format", ""]) == ["text", "json"]

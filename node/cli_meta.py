"""The command line about itself: help that states defaults, `--version`, shell completion.

    gmchain --version              version, commit, Python, SM2 backend and its OpenSSL
    gmchain completion bash|zsh    a completion script generated from build_parser()

Rules this module keeps:
1. Every option's help states its default when it has one: `DefaultsHelpFormatter` appends
   "(default: X)" to a help text that does not already say "default", for every option whose
   default is a value (not None, not the False of a flag). tests/test_cli_help.py walks the
   whole parser tree (`walk_parsers`) and fails on an option or argument without help, or whose
   shown help does not state its default.
2. `--version` is computed when asked for, not when the parser is built (it loads the SM2
   backend and may run git: node/buildinfo.py), and needs no `[node]` extra.
3. The completion script is data generated from the parser (subcommands per command path,
   options, which options take a value, their choices) plus one fixed bash function; it never
   runs gmchain while completing. zsh uses the same function through bashcompinit, so the two
   shells complete the same words. Of the commands that hand their arguments to a tool of its
   own, `cluster` and `platform` complete through that tool's parser (`DELEGATED`); `bench`
   and `db` complete their name only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

__all__ = [
    "CliParser",
    "DefaultsHelpFormatter",
    "VersionAction",
    "add_completion_command",
    "completion_script",
    "walk_parsers",
]


def states_default(action: argparse.Action) -> bool:
    """Rule 1: whether the action has a default that its help must state."""
    if action.default is None or action.default is argparse.SUPPRESS:
        return False
    if action.nargs == 0:  # flags (store_true/false, count, help, version)
        return False
    return not (isinstance(action.default, list) and not action.default)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Rule 1: append "(default: X)" where the help does not mention its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or text is argparse.SUPPRESS or not states_default(action):
            return text
        if "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


class CliParser(argparse.ArgumentParser):
    """The parser of every gmchain command line (`gmchain`, `gmchain cluster`, `gmchain
    platform`): a usage error is one line on stderr and exit 2 (node/cli.py rule 1); help states
    defaults (rule 1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class VersionAction(argparse.Action):
    """Rule 2: `--version` prints node/buildinfo.py's `version_text()` and exits 0."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the version, commit and SM2 backend (OpenSSL), then exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        from gmchain.node.buildinfo import version_text

        sys.stdout.write(version_text())
        parser.exit(0)


# `gmchain NAME ...` hands its arguments to the parser built by this module's build_parser()
DELEGATED = {"cluster": "gmchain.node.cluster", "platform": "gmchain.node.platform"}


def _delegated_parser(name: str) -> argparse.ArgumentParser | None:
    import importlib

    try:
        module = importlib.import_module(DELEGATED[name])
    except ImportError:  # an SDK-only install (no [node] extra): complete the name only
        return None
    parser: argparse.ArgumentParser = module.build_parser()
    return parser


def walk_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, the root's path being (); a delegated
    command's own parser stands in for its stub (rule 3)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                tool = _delegated_parser(name) if not path and name in DELEGATED else None
                yield from walk_parsers(tool or sub, (*path, name))


# --- completion (rule 3) ------------------------------------------------------------------------

_BASH_FUNCTION = r"""
_gmchain() {
    # zsh (bashcompinit) hands over 1-based arrays; the indices below are bash's (0-based)
    [[ -n ${ZSH_VERSION-} ]] && setopt localoptions ksharrays
    local cur="${COMP_WORDS[COMP_CWORD]}" path="gmchain" w i skip=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if ((skip)); then skip=0; continue; fi
        if [[ $w == -* ]]; then
            [[ $w != *=* && " ${_gmchain_vals[$path]} " == *" $w "* ]] && skip=1
            continue
        fi
        [[ " ${_gmchain_subs[$path]} " == *" $w "* ]] && path="$path $w"
    done
    if ((skip)); then
        local key="$path ${COMP_WORDS[COMP_CWORD-1]}"
        if [[ -n ${_gmchain_choices[$key]} ]]; then
            COMPREPLY=($(compgen -W "${_gmchain_choices[$key]}" -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
    elif [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${_gmchain_opts[$path]}" -- "$cur"))
    elif [[ -n ${_gmchain_subs[$path]} ]]; then
        COMPREPLY=($(compgen -W "${_gmchain_subs[$path]}" -- "$cur"))
    elif [[ -n ${_gmchain_args[$path]} ]]; then
        COMPREPLY=($(compgen -W "${_gmchain_args[$path]}" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}
complete -F _gmchain gmchain
"""


def _quote(text: str) -> str:
    """Single-quoted for bash and zsh alike."""
    return "'" + text.replace("'", "'\\''") + "'"


def _table(name: str, rows: dict[str, list[str]]) -> list[str]:
    lines = [f"declare -gA {name}=("]
    lines += [f"    [{_quote(k)}]={_quote(' '.join(v))}" for k, v in rows.items() if v]
    lines.append(")")
    return lines


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` ("bash" or "zsh"), generated from `parser`."""
    subs: dict[str, list[str]] = {}
    opts: dict[str, list[str]] = {}
    vals: dict[str, list[str]] = {}
    choices: dict[str, list[str]] = {}
    args: dict[str, list[str]] = {}  # the choices of a command's positional arguments
    for path, p in walk_parsers(parser):
        key = " ".join(("gmchain", *path))
        subs[key], opts[key], vals[key], args[key] = [], [], [], []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                subs[key] += list(action.choices)
                continue
            opts[key] += action.option_strings
            if not action.option_strings and action.choices is not None:
                args[key] += [str(c) for c in action.choices]
            if action.option_strings and action.nargs != 0:
                vals[key] += action.option_strings
                if action.choices is not None:
                    for opt in action.option_strings:
                        choices[f"{key} {opt}"] = [str(c) for c in action.choices]
    head = [
        "# gmchain shell completion, generated by `gmchain completion` from the CLI's parser.",
        "# Load it with: source <(gmchain completion bash)   (bash 4.2 or later), or save it as",
        "# /etc/bash_completion.d/gmchain (docs/ops.md, Install).",
    ]
    if shell == "zsh":
        head = [
            "#compdef gmchain",
            "# gmchain zsh completion, generated by `gmchain completion zsh` (bash's function",
            "# through bashcompinit). Load it with: source <(gmchain completion zsh)",
            "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }",
            "autoload -U +X bashcompinit && bashcompinit",
        ]
    body = (
        _table("_gmchain_subs", subs)
        + _table("_gmchain_opts", opts)
        + _table("_gmchain_vals", vals)
        + _table("_gmchain_choices", choices)
        + _table("_gmchain_args", args)
    )
    return "\n".join(head + body) + "\n" + _BASH_FUNCTION


def _cmd_completion(args: argparse.Namespace) -> int:
    from gmchain.node.cli import build_parser

    print(completion_script(build_parser(), args.shell), end="")
    return 0


def add_completion_command(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script generated from this command line's parser. "
        "bash: `source <(gmchain completion bash)`, or save it in /etc/bash_completion.d/gmchain; "
        "zsh: `source <(gmchain completion zsh)`.",
    )
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete for")
    p.set_defaults(handler=_cmd_completion)

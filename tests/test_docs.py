"""The code in README.md and docs/: every `genretune` command of a shell block parses (its
subcommand and flags exist and take the values shown), and the Python examples run
(tests/test_predict.py and tests/test_results.py, beside the model and experiment they need;
docs/cluster.md's walkthrough is run whole by tests/test_cluster_walkthrough.py)."""

from __future__ import annotations

import re
import shlex

import pytest
from helpers import DOCS, doc_code_blocks

from genretune.search.cli import build_parser

SHELL = ("bash", "sh", "shell", "console")


def _commands(code: str) -> list[str]:
    """The `genretune ...` commands of a shell block (continuations joined, comments and
    prompts dropped, shell variables replaced by a word)."""
    joined = code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line.split(" #")[0]):
            part = re.sub(r"\$\{?(\w+)\}?", r"\1", part)
            if part.startswith("genretune "):
                out.append(part)
    return out


def _documented_commands() -> list[tuple[str, str]]:
    return [
        (path.name, command)
        for path in DOCS
        for block in doc_code_blocks(path, SHELL)
        for command in _commands(block)
    ]


def test_the_docs_have_commands_to_check():
    names = {name for name, _ in _documented_commands()}
    assert {"README.md", "search.md", "training.md", "cluster.md"} <= names, names


@pytest.mark.parametrize(("doc", "command"), _documented_commands())
def test_every_documented_command_parses(doc, command, capsys):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        err = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"{doc}: `{command}`: {err[-1] if err else exc}")

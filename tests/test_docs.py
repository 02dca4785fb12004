"""The code in README.md and docs/: every `genretune` command of a shell block parses (its
subcommand and flags exist and take the values shown), in the fast lane. The commands also run
(tests/test_doc_commands.py; docs/cluster.md's walkthrough whole in
tests/test_cluster_walkthrough.py), and so do the Python examples (tests/test_predict.py and
tests/test_results.py, beside the model and experiment they need)."""

from __future__ import annotations

import shlex

import pytest
from helpers import DOCS, doc_code_blocks, doc_commands

from genretune.search.cli import build_parser

SHELL = ("bash", "sh", "shell", "console")


def _documented_commands() -> list[tuple[str, str]]:
    return [
        (path.name, command)
        for path in DOCS
        for block in doc_code_blocks(path, SHELL)
        for command in doc_commands(block)
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

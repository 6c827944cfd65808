"""``waystone init``: write a starter config.

The starter is embedded here (the package must work without the source checkout, where
``sample-config.toml`` documents every key): the offline mock provider with prices, so
``waystone serve`` answers at once, and commented examples to grow from.
"""

from __future__ import annotations

import typer

from waystone_cli import render
from waystone_cli.configstore import write_config_text
from waystone_cli.context import app_context

STARTER = """\
# waystone config, written by `waystone init`.
# Every key is documented in sample-config.toml in the waystone repository.
# The `waystone` commands rewrite this file and do not keep comments.

[server]
host = "127.0.0.1"       # loopback only until you create a key (`waystone key create NAME`)
port = 8787

# An offline provider that answers deterministically: try it with `waystone serve`.
[providers.local]
kind = "mock"
models = ["mock-small", "mock-large"]

# A real one (`waystone provider add openai --base-url https://api.openai.com/v1
#   --api-key-env OPENAI_API_KEY --model gpt-4o-mini`):
# [providers.openai]
# base_url = "https://api.openai.com/v1"
# api_key = "env:OPENAI_API_KEY"
# models = ["gpt-4o", "gpt-4o-mini"]

# USD per million tokens.
[prices."local/mock-small"]
input = 0.5
output = 1.5

[prices."local/mock-large"]
input = 1.0
output = 4.0
"""


def register(root: typer.Typer) -> None:
    root.command("init", help="Write a starter config.")(init)


def init(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing config file."),
) -> None:
    path = app_context(ctx).config_path
    write_config_text(path, STARTER, overwrite=force)
    render.print_line(f"Wrote a starter config to {path}")

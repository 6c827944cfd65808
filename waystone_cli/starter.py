"""The starter config that `waystone init` writes and `waystone demo` builds on.

Embedded here because the package must work without the source checkout, where
``sample-config.toml`` documents every key: the offline mock provider with prices, so
``waystone serve`` answers at once, and commented examples to grow from.
"""

from __future__ import annotations

STARTER = """\
# waystone config, written by `waystone init`.
# Every key is documented in sample-config.toml in the waystone repository.
# The `waystone` commands edit this file in place and keep its comments.

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

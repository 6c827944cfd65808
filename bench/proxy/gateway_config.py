"""The waystone config the benchmark runs with.

One provider (``bench``) pointing at the fake provider, priced, with the ledger on.
With ``rulesets > 0`` it adds that many rulesets (issue 4's bar: 20 rulesets, 10,000
users) built from the condition mix of ``bench/policy.py``: scoped and unscoped
conditions, usage caps on calendar and rolling windows, a member share of group credits,
rpm/tpm/concurrency limits, a model downgrade, a token cap and a retention rule.  The
limits are set far above what a benchmark run reaches: every rule is evaluated on every
request, none blocks, so throughput is comparable and the run has no errors.  The 50
groups are declared with credits so the share rule and the credits check have work to do.
"""

from __future__ import annotations

RULES = """
[rules.downgrade-o3]
model = "bench/o3*"
action = "change_model"
to = "bench/bench-model-mini"

[rules.cap-month]
usage = { metric = "cost_usd", window = "month", over = 1000000 }
action = "block"

[rules.cap-30d]
usage = { metric = "tokens", window = "30d", over = 1000000000000 }
action = "block"

[rules.cap-day]
usage = { metric = "requests", window = "day", over = 1000000000 }
action = "block"

[rules.rate]
rate = { rpm = 10000000, tpm = 1000000000, concurrent = 100000 }
action = "block"

[rules.share]
share = { of = "credits", max = 0.5 }
action = "block"

[rules.cap-tokens]
action = "limit_tokens"
max = 4096

[rules.retain-90d]
action = "retain"
days = 90
"""

CONDITIONS = [
    ("user.tier = free", ["downgrade-o3", "cap-month"]),
    ("tier = pro", ["cap-30d"]),
    ("has group", ["share"]),
    ("always", ["rate"]),
    ("group.region = eu", ["cap-tokens"]),
    ("user.joined within 30d", ["retain-90d"]),
    ("user.tier = free and not has group", ["cap-day"]),
    ("user.plan exists", ["cap-tokens"]),
    ("group.region != us or user.tier = pro", ["cap-day"]),
    ("user.beta is true", ["downgrade-o3"]),
]


def config_text(
    port: int,
    provider_port: int,
    rulesets: int = 0,
    groups: int = 50,
    flush_interval_ms: int | None = None,
) -> str:
    flush = "" if flush_interval_ms is None else f"flush_interval_ms = {flush_interval_ms}\n"
    text = f"""\
[server]
host = "127.0.0.1"
port = {port}

[ledger]
store_content = false
{flush}
[providers.bench]
base_url = "http://127.0.0.1:{provider_port}/v1"
api_key = "env:BENCH_PROVIDER_KEY"
models = ["bench-model", "bench-model-mini"]

[prices."bench/bench-model"]
input = 2.5
output = 10.0
cached_input = 1.25

[prices."bench/bench-model-mini"]
input = 0.15
output = 0.6
"""
    if rulesets <= 0:
        return text
    text += RULES
    for i in range(rulesets):
        when, rules = CONDITIONS[i % len(CONDITIONS)]
        listed = ", ".join(f'"{r}"' for r in rules)
        text += f'\n[rulesets.rs-{i}]\nwhen = "{when}"\nrules = [{listed}]\npriority = {i % 3}\n'
    for g in range(groups):
        text += f'\n[groups.g{g}]\ncredits = {{ usd = 1000000, window = "month" }}\n'
    return text

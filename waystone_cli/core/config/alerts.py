"""Reading ``[alerts]``: the webhook, its signing secret, the thresholds, the timeout.

Thresholds are fractions of a limit: each above 0, listed in increasing order without
repeats (a list out of order is almost always a typo, so it is refused rather than
sorted).  A fraction above 1 is allowed: an alert at 120% of a limit that only changes
the model or flags the request still says something.
"""

from __future__ import annotations

import math

from waystone_cli.core.config.snapshot import AlertsConfig
from waystone_cli.core.config.table import Table, type_name
from waystone_cli.core.errors import ConfigError


def alerts_config(t: Table) -> AlertsConfig:
    d = AlertsConfig()
    a = AlertsConfig(
        webhook=t.get("webhook", str, None),
        secret=t.get("secret", str, None),
        thresholds=_thresholds(t),
        timeout_s=float(t.get("timeout_s", (int, float), d.timeout_s)),
    )
    t.done()
    if a.webhook is not None and not a.webhook.startswith(("http://", "https://")):
        raise ConfigError(f"{t.at('webhook')}: must start with http:// or https://")
    if a.secret is not None and (not a.secret or a.secret == "env:"):
        raise ConfigError(f"{t.at('secret')}: must be the secret or env:NAME")
    if not 0 < a.timeout_s < math.inf:
        raise ConfigError(f"{t.at('timeout_s')}: must be a positive number of seconds")
    return a


def _thresholds(t: Table) -> tuple[float, ...]:
    if "thresholds" not in t.data:
        t.seen.add("thresholds")
        return AlertsConfig().thresholds
    values = t.get("thresholds", list, [])
    if not values:
        raise ConfigError(f"{t.at('thresholds')}: needs at least one fraction, like [0.8]")
    out: list[float] = []
    for i, v in enumerate(values):
        path = f"{t.at('thresholds')}[{i}]"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type_name(v)}")
        if not 0 < v < math.inf:
            raise ConfigError(f"{path}: must be a fraction above 0 (0.8 is 80% of a limit)")
        if out and v <= out[-1]:
            raise ConfigError(f"{path}: thresholds must be increasing, without repeats")
        out.append(float(v))
    return tuple(out)

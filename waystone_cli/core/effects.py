"""What fired rules do to a request, combined (SPEC §6 "Evaluation").

Blocks are collected apart (``Block``); every other fired rule is a ``Firing``, and
``combine()`` turns them into the request's ``Effects``: ``change_model`` applies once,
highest ruleset ``priority`` first, then TOML order of rulesets, then rule order (the
others are reported as not applied); ``limit_tokens`` takes the smallest cap, ``retain``
the fewest days; fallbacks (in the same order as change_model), output checks, datasets
and capture accumulate, each rule once even when it fired for two subjects; ``flag``
marks the request's ledger row and changes nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from waystone_cli.core.config import Config, RuleConfig, RulesetConfig
from waystone_cli.core.decision import Fallback, OutputCheck, Reason, qualify


class Firing(NamedTuple):
    """A rule that fired (for one subject)."""

    ruleset: RulesetConfig
    order: int  # the ruleset's position in the TOML
    position: int  # the rule's position in the ruleset
    rule: RuleConfig
    kind: str  # "policy" | "quota" | "rate" | "unpriced"
    detail: str
    retry_after: float | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.ruleset.name, self.rule.name)

    @property
    def rank(self) -> tuple[int, int, int]:
        return (-self.ruleset.priority, self.order, self.position)


class Block(NamedTuple):
    status: int
    code: str
    message: str
    retry_after: float | None


class Effects(NamedTuple):
    """What the fired rules (other than blocks) do to the request."""

    model: str
    max_tokens: int | None = None
    fallbacks: tuple[Fallback, ...] = ()
    output_checks: tuple[OutputCheck, ...] = ()
    datasets: tuple[str, ...] = ()
    capture: bool = False
    retain_days: int | None = None
    flagged: bool = False


def combine(
    config: Config, firings: Sequence[Firing], model: str
) -> tuple[Effects, tuple[Reason, ...]]:
    """The effects of ``firings`` on a request for ``model``, and what choosing between
    several ``change_model`` rules says about it."""
    once = {f.key: f for f in sorted(firings, key=lambda f: f.rank)}
    by_action: dict[str, list[Firing]] = {}
    for f in once.values():
        by_action.setdefault(f.rule.action, []).append(f)
    caps = [f.rule.max for f in by_action.get("limit_tokens", []) if f.rule.max]
    days = [f.rule.days for f in by_action.get("retain", []) if f.rule.days]
    datasets = [f.rule.dataset for f in by_action.get("dataset", []) if f.rule.dataset]
    fallbacks = tuple(
        Fallback(
            qualify(config, f.rule.to or "", model), f.rule.retries, f.ruleset.name, f.rule.name
        )
        for f in by_action.get("fallback", [])
    )
    checks = tuple(
        OutputCheck(
            f.ruleset.name, f.rule.name, f.rule.deny_regex, f.rule.moderation, f.rule.on_fail
        )
        for f in by_action.get("check_output", [])
    )
    changed, reasons = _change_model(config, by_action.get("change_model", []), model)
    effects = Effects(
        model=changed,
        max_tokens=min(caps, default=None),
        fallbacks=fallbacks,
        output_checks=checks,
        datasets=tuple(dict.fromkeys(datasets)),
        capture=bool(by_action.get("capture")),
        retain_days=min(days, default=None),
        flagged=bool(by_action.get("flag")),
    )
    return effects, reasons


def _change_model(
    config: Config, changes: list[Firing], model: str
) -> tuple[str, tuple[Reason, ...]]:
    if not changes:
        return model, ()
    first = changes[0]
    to = qualify(config, first.rule.to or "", model)
    reasons = [
        Reason(
            f'model changed from "{model}" to "{to}" by ruleset '
            f'"{first.ruleset.name}", rule "{first.rule.name}"',
            first.ruleset.name,
            first.rule.name,
        )
    ]
    for f in changes[1:]:
        reasons.append(
            Reason(
                f'rule "{f.rule.name}" of ruleset "{f.ruleset.name}" not applied: the model was '
                f'already changed by ruleset "{first.ruleset.name}" (change_model applies once)',
                f.ruleset.name,
                f.rule.name,
            )
        )
    return to, tuple(reasons)


def effect_text(rule: RuleConfig) -> str:
    """What a fired rule does, in words (for the decision's reasons)."""
    action = rule.action
    if action == "block":
        return "blocks the request"
    if action == "change_model":
        return f'change the model to "{rule.to}"'
    if action == "fallback":
        return f'fall back to "{rule.to}" after {rule.retries} retries'
    if action == "limit_tokens":
        return f"cap max_tokens at {rule.max}"
    if action == "check_output":
        return f"check the output ({'block' if rule.on_fail == 'block' else 'flag'} on failure)"
    if action == "dataset":
        return f'add the request to dataset "{rule.dataset}"'
    if action == "retain":
        return f"keep its ledger rows {rule.days} days"
    if action == "capture":
        return "capture prompts and outputs"
    if action == "flag":
        return "flag the request"
    raise ValueError(f"unknown action {action!r}")

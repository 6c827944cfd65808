"""``waystone usage``: reports, timelines, spikes, exports, datasets and pruning.

Each command turns its options into query parameters (times as naive-UTC ISO strings,
worked out here so the daemon and the file give the same answer), runs one named ledger
query through ``AppContext.query`` and renders the result.  Nothing heavy is imported
at module level: duckdb is only loaded inside the query path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

import typer

from waystone_cli.context import app_context
from waystone_cli.core.errors import NotFoundError, UsageError
from waystone_cli.ledger.spikes import RULE

T = TypeVar("T")


class By(StrEnum):
    user = "user"
    group = "group"
    model = "model"
    provider = "provider"


class Entity(StrEnum):
    user = "user"
    group = "group"


class Metric(StrEnum):
    cost = "cost"
    tokens = "tokens"
    requests = "requests"


class Every(StrEnum):
    hour = "hour"
    day = "day"


SINCE_HELP = "Start: a duration back from now (30d, 12h) or a UTC date/time (2026-11-01)."
UNTIL_HELP = "End (exclusive): a duration back from now or a UTC date/time; default now."
JSON_HELP = "Print JSON instead of a table."


def iso_time(text: str | None, now: datetime) -> str | None:
    """``--since``/``--until`` as a naive-UTC ISO string (what the queries take)."""
    if text is None:
        return None
    from waystone_cli.core.windows import WindowError, parse_since

    try:
        return _naive_iso(parse_since(text, now))
    except WindowError as err:
        raise UsageError(str(err)) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _naive_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def _empty(ctx: typer.Context, nothing: str) -> None:
    """Say why there is nothing to show: an empty ledger, or an empty selection."""
    from waystone_cli import render

    state = app_context(ctx)
    if state.query("usage_status")["requests"] == 0:
        url = state.ledger_url()
        if url is None:
            where = str(state.ledger_path())
        else:
            from waystone_cli.ledger.postgres import hide_password

            where = hide_password(url)
        render.print_line(f"The ledger is empty: no request recorded yet ({where}).")
    else:
        render.print_line(nothing)


def require_known(ctx: typer.Context, user: str | None = None, group: str | None = None) -> None:
    """Refuse a user or group id neither declared in the config nor seen in traffic: a
    typo must say so, not print "No requests" (as ``kubectl get`` says "not found")."""
    from waystone_cli.commands.users import seen_entity
    from waystone_cli.core.entities import Kind

    if user is None and group is None:
        return
    config = app_context(ctx).load()
    lookups: tuple[tuple[Kind, str | None, Mapping[str, Any]], ...] = (
        ("user", user, config.users),
        ("group", group, config.groups),
    )
    for kind, ident, declared in lookups:
        if ident is None or ident in declared:
            continue
        if seen_entity(ctx, config, kind, ident) is None:
            raise NotFoundError(
                f'no {kind} named "{ident}": not declared in the config, never seen in traffic'
            )


def _print(parts: list[Any]) -> None:
    from waystone_cli import render

    render.print_parts(parts)


def top(
    ctx: typer.Context,
    by: By = typer.Option(By.user, "--by", help="Rank users, groups, models or providers."),
    metric: Metric = typer.Option(
        Metric.cost, "--metric", help="Rank by cost, tokens or requests."
    ),
    since: str = typer.Option("30d", "--since", help=SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    limit: int = typer.Option(20, "--limit", min=1, help="How many rows to show."),
    user: str | None = typer.Option(None, "--user", help="Only this user's requests."),
    group: str | None = typer.Option(None, "--group", help="Only requests made in this group."),
    model: str | None = typer.Option(
        None, "--model", help="Only this model (provider/model or bare)."
    ),
    flagged: bool = typer.Option(
        False, "--flagged", help="Only the requests a flag rule marked (a spike, most often)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Who uses the most: the top users, groups, models or providers over a period."""
    from waystone_cli import render
    from waystone_cli.render.usage import top_view

    require_known(ctx, user=user, group=group)
    now = _now()
    params = {"since": iso_time(since, now), "until": iso_time(until, now)}
    filters = {"user": user, "group": group, "model": model, "flagged": flagged}
    result = app_context(ctx).query(
        "usage_top", by=by.value, metric=metric.value, limit=limit, **filters, **params
    )
    if as_json:
        render.print_json(result["rows"])
    elif not result["rows"]:
        what = "flagged requests" if flagged else "requests"
        _empty(ctx, f"No {what} between {params['since']} and {params['until'] or 'now'}.")
    else:
        room = render.table_room()
        span = (params["since"], params["until"])
        _print(top_view(result, by.value, metric.value, *span, room, flagged=flagged))


def show(
    ctx: typer.Context,
    kind: Entity = typer.Argument(..., help="user or group"),
    id: str = typer.Argument(..., help="The user's or group's id."),
    since: str | None = typer.Option(None, "--since", help=SINCE_HELP + " Default: all time."),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """One user's or group's usage: totals, models, groups or members, and a daily chart."""
    from waystone_cli import render
    from waystone_cli.render.usage import show_view

    require_known(ctx, **{kind.value: id})
    now = _now()
    params = {"since": iso_time(since, now), "until": iso_time(until, now)}
    # The daily series runs to now, so recent quiet days show as 0.
    series = {**params, "until": params["until"] or _naive_iso(now)}
    result = app_context(ctx).query("usage_show", kind=kind.value, id=id, **series)
    if as_json:
        render.print_json(result)
    elif result["requests"] == 0:
        _empty(ctx, f"No requests by {kind.value} {id} in this period.")
    else:
        _print(show_view(result, kind.value, params["since"], params["until"], render.table_room()))


def timeline(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", help="Only this user's requests."),
    group: str | None = typer.Option(None, "--group", help="Only this group's requests."),
    model: str | None = typer.Option(
        None, "--model", help="Only this model (provider/model or bare)."
    ),
    every: Every = typer.Option(Every.day, "--every", help="One bucket per hour or per day."),
    since: str | None = typer.Option(
        None, "--since", help=SINCE_HELP + " Default: 30d by day, 48h by hour."
    ),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    metric: Metric = typer.Option(Metric.cost, "--metric", help="Chart cost, tokens or requests."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Usage over time, per hour or day, as a chart in the terminal."""
    from waystone_cli import render
    from waystone_cli.render.usage import span_text, timeline_view

    if sum(x is not None for x in (user, group, model)) > 1:
        raise UsageError("give at most one of --user, --group and --model")
    require_known(ctx, user=user, group=group)
    now = _now()
    default = "30d" if every is Every.day else "48h"
    params = {"since": iso_time(since or default, now), "until": iso_time(until, now)}
    # The series runs to now (not to the last request), so quiet recent hours show as 0.
    series = {**params, "until": params["until"] or _naive_iso(now)}
    rows = app_context(ctx).query(
        "usage_timeline", every=every.value, user=user, group=group, model=model, **series
    )
    if as_json:
        render.print_json(rows)
        return
    if not any(r["requests"] for r in rows):
        _empty(ctx, "No requests in this period.")
        return
    subject = (
        f"user {user}"
        if user
        else f"group {group}"
        if group
        else f"model {model}"
        if model
        else "all"
    )
    title = f"{metric.value.capitalize()} per {every.value}, {subject}, {span_text(params['since'], params['until'])}"
    width = render.console().width
    _print(timeline_view(rows, metric.value, every.value, title, width))


def spikes(
    ctx: typer.Context,
    since: str = typer.Option("7d", "--since", help=SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help=UNTIL_HELP),
    every: Every = typer.Option(Every.hour, "--every", help="Judge hours or days."),
    by: Entity = typer.Option(Entity.user, "--by", help="Judge each user or each group."),
    metric: Metric = typer.Option(Metric.cost, "--metric", help="Judge cost, tokens or requests."),
    rule: str | None = typer.Option(
        None, "--rule", help="Replay only this spike rule of the config."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="Show the largest N (by excess)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Buckets where a user's or group's usage stands far above its own recent baseline."""
    from waystone_cli import render
    from waystone_cli.render.usage import rule_spikes_table, spikes_table

    now = _now()
    params = {"since": iso_time(since, now), "until": iso_time(until, now)}
    triggers = _spike_rules(ctx, rule)
    if triggers:
        rows = []
        for name, trigger in triggers.items():
            rows += app_context(ctx).query(
                "usage_rule_spikes", rule=name, by=by.value, limit=limit, **trigger, **params
            )
        rows = sorted(rows, key=lambda r: (r["at"], r[by.value], r["rule"]))[:limit]
        nothing = f"No spikes: no spike rule fired for a {by.value}."
        title = f"{len(rows)} spikes of {', '.join(triggers)}"
        table = rule_spikes_table
    else:
        rows = app_context(ctx).query(
            "usage_spikes",
            every=every.value,
            by=by.value,
            metric=metric.value,
            limit=limit,
            **params,
        )
        nothing = f"No spikes: no {every.value} stands out from its {by.value}'s baseline."
        title = f"{len(rows)} spikes in {metric.value} per {every.value}"
        table = spikes_table
    if as_json:
        render.print_json(rows)
    elif not rows:
        _empty(ctx, nothing)
    else:
        _print([title, table(rows, by.value)])


def _spike_rules(ctx: typer.Context, only: str | None) -> dict[str, dict[str, Any]]:
    """The config's spike rules (or just ``only``) as query parameters, by rule name."""
    config = app_context(ctx).load()
    if only is not None:
        found = config.rules.get(only)
        if found is None:
            raise NotFoundError(f'no rule named "{only}" in the config')
        if found.spike is None:
            raise UsageError(f'rule "{only}" has no spike trigger')
    chosen = [r for r in config.rules.values() if r.spike and only in (None, r.name)]
    return {
        r.name: {
            "metric": r.spike.metric,
            "window": r.spike.window,
            "factor": r.spike.factor,
            "baseline": r.spike.baseline,
            "min": r.spike.min,
        }
        for r in chosen
        if r.spike is not None
    }


spikes.__doc__ = f"{spikes.__doc__}\n\n{RULE}"


def _with_progress(label: str, work: Callable[[], T]) -> T:
    """Run ``work`` with a progress bar on stderr (pulsing: one COPY reports no steps)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from waystone_cli import render

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=render.err_console(), transient=True) as progress:
        progress.add_task(label, total=None)
        return work()


def datasets(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)
) -> None:
    """List the review datasets that dataset rules collected (one: `usage dataset NAME`)."""
    from waystone_cli import render
    from waystone_cli.render.usage import datasets_table

    rows = app_context(ctx).query("usage_datasets")
    if as_json:
        render.print_json(rows)
    elif not rows:
        _empty(ctx, 'No datasets yet: a rule with action = "dataset" collects requests into one.')
    else:
        render.print_table(datasets_table(rows))


def dataset(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The dataset's name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show one dataset's items: input, output, user, group, model, time (all: `datasets`)."""
    from waystone_cli import render
    from waystone_cli.render.usage import dataset_table

    rows = app_context(ctx).query("usage_dataset", dataset_name=name)
    if as_json:
        render.print_json(rows)
    else:
        render.print_table(dataset_table(rows))


def prune(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would be deleted."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete rows whose retain rule has run out (rows from before the rule never expire)."""
    from waystone_cli import render
    from waystone_cli.ledger.access import run_write
    from waystone_cli.render.usage import prune_text

    state = app_context(ctx)
    result = _with_progress(
        "pruning",
        lambda: run_write(
            "usage_prune",
            ledger_path=state.ledger_path(),
            socket_path=state.socket_path(),
            ledger_url=state.ledger_url(),
            now=_now().isoformat(),
            dry_run=dry_run,
        ),
    )
    if as_json:
        render.print_json(result)
    else:
        render.print_line(prune_text(result))


def register(root: typer.Typer) -> None:
    """Add the ``usage`` group to the root app."""
    app = typer.Typer(
        no_args_is_help=True, help="Usage reports, timelines, spikes, exports and datasets."
    )
    from waystone_cli.commands.export import export

    for command in (top, show, timeline, spikes, export, datasets, dataset, prune):
        app.command(name=command.__name__)(command)
    root.add_typer(app, name="usage")

"""The ruleset condition language: parsing, errors, evaluation and subjects (SPEC §6)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from waystone_cli.core.conditions import ConditionError, Facts, parse_condition
from waystone_cli.core.entities import Entity
from waystone_cli.core.errors import UsageError

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_ABSENT = object()


def user(metadata: dict[str, Any] | None = None, first_seen: datetime | None = None) -> Entity:
    return Entity(kind="user", id="alice", metadata=metadata or {}, first_seen=first_seen)


def group(metadata: dict[str, Any] | None = None, first_seen: datetime | None = None) -> Entity:
    return Entity(kind="group", id="acme", metadata=metadata or {}, first_seen=first_seen)


def holds(text: str, metadata: dict[str, Any]) -> bool:
    return parse_condition(text).matches(user(metadata), NOW)


@pytest.mark.parametrize(
    ("value", "is_true", "is_false"),
    [
        ("free", True, False),
        ("false", True, False),  # SPEC §6: any non-empty string is truthy
        ("0", True, False),
        ("", False, True),
        (0, False, True),
        (1, True, False),
        (-2, True, False),
        (0.0, False, True),
        (0.5, True, False),
        (True, True, False),
        (False, False, True),
        (date(2026, 1, 1), True, False),
        (None, False, False),
        ([1, 2], False, False),
        ({"a": 1}, False, False),
        (_ABSENT, False, False),
    ],
)
def test_truthiness_table(value: Any, is_true: bool, is_false: bool) -> None:
    metadata = {} if value is _ABSENT else {"flag": value}
    assert (holds("flag is true", metadata), holds("flag is false", metadata)) == (
        is_true,
        is_false,
    )


@pytest.mark.parametrize(
    ("value", "condition", "expected"),
    [
        ("free", "tier = free", True),
        ("Free", "tier = free", False),
        ("paid", "tier = free", False),
        (1, "tier = 1", True),
        ("1", "tier = 1", True),
        (1, 'tier = "1"', True),
        (True, "tier = true", True),
        ("true", "tier = true", True),
        (False, "tier = false", True),
        (True, "tier = 1", False),
        (3.0, "tier = 3", True),
        (3, "tier = 3.0", True),
        ("3", "tier = 3.0", True),
        ("3.0", "tier = 3.0", True),
        ("3.0", "tier = 3", False),
        ("3.0", 'tier = "3"', False),
        (2.5, "tier = 2.5", True),
        (2.5, "tier = 2.50", True),
        (7, "tier = +7", True),
        (date(2026, 11, 1), "tier = 2026-11-01", True),
        (datetime(2026, 11, 1, 8, 30), 'tier = "2026-11-01T08:30:00"', True),
        ("a b", 'tier = "a b"', True),
        ("a b", "tier = 'a b'", True),
        ('say "hi"', r'tier = "say \"hi\""', True),
        ("it's", r"tier = 'it\'s'", True),
        ("back\\slash", r'tier = "back\\slash"', True),
        ("x@y.io", "tier = x@y.io", True),
        ("eu-west/1:a+b", "tier = eu-west/1:a+b", True),
        ("and", 'tier = "and"', True),
        (None, "tier = null", False),
        ([1], "tier = 1", False),
        (_ABSENT, "tier = free", False),
        ("free", "tier != free", False),
        ("paid", "tier != free", True),
        (1, "tier != 1", False),
        (_ABSENT, "tier != free", True),
        (None, "tier != free", True),
    ],
)
def test_equality_compares_as_text(value: Any, condition: str, expected: bool) -> None:
    metadata = {} if value is _ABSENT else {"tier": value}
    assert holds(condition, metadata) is expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"region": "eu"}, True),
        ({"region": ""}, True),
        ({"region": None}, True),
        ({"region": False}, True),
        ({"other": "eu"}, False),
        ({}, False),
    ],
)
def test_exists_means_the_key_is_present(metadata: dict[str, Any], expected: bool) -> None:
    assert holds("region exists", metadata) is expected


@pytest.mark.parametrize(
    ("condition", "metadata", "expected"),
    [
        ("user.plan.name = pro", {"plan": {"name": "pro"}}, True),
        ("user.plan.name = pro", {"plan.name": "pro", "plan": {"name": "x"}}, True),
        ("user.plan.name exists", {"plan": "pro"}, False),
        ("user.plan.name exists", {"plan": {}}, False),
        ("id = alice", {}, True),
        ("user.id = alice", {}, True),
        ("id = alice", {"id": "a-1"}, False),
        ("user.id exists", {}, True),
        ("joined = yes", {"joined": "yes"}, True),
        ("always = 1", {"always": 1}, True),
        ("has is true", {"has": 1}, True),
        ("region_2 = eu", {"region_2": "eu"}, True),
        ("x-y = 1", {"x-y": 1}, True),
    ],
)
def test_field_paths_ids_and_keyword_named_fields(
    condition: str, metadata: dict[str, Any], expected: bool
) -> None:
    assert holds(condition, metadata) is expected


@pytest.mark.parametrize(
    ("first_seen", "expected"),
    [
        (NOW - timedelta(days=30), True),  # the boundary is inside
        (NOW - timedelta(days=30, seconds=1), False),
        (NOW - timedelta(days=1), True),
        (NOW + timedelta(hours=1), True),
        (datetime(2026, 10, 28, 12, 0), True),  # naive is UTC: exactly 30 days
        (datetime(2026, 10, 28, 13, 0, tzinfo=UTC) + timedelta(hours=-2), False),
        (None, False),
    ],
)
def test_joined_within(first_seen: datetime | None, expected: bool) -> None:
    alice = user(first_seen=first_seen)
    for text in ("joined within 30d", "user.joined within 30d", "joined within 720h"):
        assert parse_condition(text).matches(alice, NOW) is expected, text


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        ("a = 1 or b = 1 and c = 1", {"a": 1}, True),
        ("a = 1 or b = 1 and c = 1", {"b": 1}, False),
        ("(a = 1 or b = 1) and c = 1", {"a": 1}, False),
        ("(a = 1 or b = 1) and c = 1", {"a": 1, "c": 1}, True),
        ("not a = 1 and b = 1", {"b": 1}, True),
        ("not a = 1 and b = 1", {"a": 1, "b": 1}, False),
        ("not (a = 1 and b = 1)", {"a": 1}, True),
        ("not not a = 1", {"a": 1}, True),
        ("not a is true", {}, True),
        ("not a is false", {}, True),
        ("a = 1 and b = 1 and c = 1", {"a": 1, "b": 1}, False),
        ("a = 1 or b = 1 or c = 1", {"c": 1}, True),
    ],
)
def test_and_or_not_precedence(condition: str, facts: dict[str, Any], expected: bool) -> None:
    assert holds(condition, facts) is expected


@pytest.mark.parametrize(
    ("condition", "grouped"),
    [
        ("a = 1 or b = 1 and c = 1", "(a = 1 or (b = 1 and c = 1))"),
        ("a = 1 and b = 1 or c = 1", "((a = 1 and b = 1) or c = 1)"),
        ("not a = 1 and b = 1", "(not a = 1 and b = 1)"),
        ("not (a = 1 or b = 1)", "not (a = 1 or b = 1)"),
        ("(((a=1)))", "a=1"),
        (
            "a = 1 and (b = 1 or c is true) and d exists",
            "(a = 1 and (b = 1 or c is true) and d exists)",
        ),
        ("has group or user.joined within 7d", "(has group or user.joined within 7d)"),
        ("tier='x y' or always", "(tier='x y' or always)"),
    ],
)
def test_grouping_shows_precedence(condition: str, grouped: str) -> None:
    assert parse_condition(condition).grouped() == grouped


FREE = {"tier": "free"}
EU = {"region": "eu"}


@pytest.mark.parametrize(
    ("condition", "user_meta", "group_meta", "expected"),
    [
        # unscoped terms test every named entity as the candidate
        ("tier = free", FREE, None, {"user"}),
        ("tier = free", FREE, FREE, {"user", "group"}),
        ("tier = free", {}, FREE, {"group"}),
        ("tier = free", None, FREE, {"group"}),
        ("tier = free", None, None, set()),
        ("tier != free", None, None, set()),
        ("region = eu", FREE, EU, {"group"}),
        ("tier = free and group.region = eu", FREE, EU, {"user"}),
        ("tier = free and group.region = eu", FREE, None, set()),
        ("joined within 30d", {}, {}, {"user"}),
        # only scoped terms: evaluated once, the subjects are the scopes referenced
        ("user.tier = free", FREE, EU, {"user"}),
        ("group.region = eu", FREE, EU, {"group"}),
        ("user.tier = free and group.region = eu", FREE, EU, {"user", "group"}),
        ("user.tier = free or group.region = eu", {}, EU, {"user", "group"}),
        ("user.tier = free", None, FREE, set()),
        ("user.tier != free", None, EU, {"group"}),
        ("user.tier != free", None, None, {"request"}),
        ("group.region = eu", FREE, None, set()),
        # no reference: every named entity, or the request itself
        ("always", FREE, EU, {"user", "group"}),
        ("always", FREE, None, {"user"}),
        ("always", None, EU, {"group"}),
        ("always", None, None, {"request"}),
        ("has group", FREE, EU, {"group"}),
        ("has group", FREE, None, set()),
        ("not has group", FREE, None, {"user"}),
        ("not has group", None, None, {"request"}),
        ("not has group", FREE, EU, set()),
        ("has group and user.tier = free", FREE, EU, {"user", "group"}),
    ],
)
def test_subjects(
    condition: str,
    user_meta: dict[str, Any] | None,
    group_meta: dict[str, Any] | None,
    expected: set[str],
) -> None:
    facts = Facts(
        user=None if user_meta is None else user(user_meta, first_seen=NOW - timedelta(days=2)),
        group=None if group_meta is None else group(group_meta),
        now=NOW,
    )
    assert parse_condition(condition).subjects(facts) == frozenset(expected)


def test_scoped_term_reads_its_scope_while_unscoped_reads_the_candidate() -> None:
    facts = Facts(user=user({"tier": "pro"}), group=group({"tier": "free"}), now=NOW)
    assert parse_condition("tier = free and user.tier = pro").subjects(facts) == {"group"}
    assert parse_condition("tier = pro and group.tier = free").subjects(facts) == {"user"}


@pytest.mark.parametrize(
    ("entity", "condition", "expected"),
    [
        (user(FREE), "tier = free", True),
        (user(FREE), "user.tier = free", True),
        (user(FREE), "group.tier = free", False),
        (user(FREE), "always", True),
        (user(FREE), "not has group", True),
        (group(EU), "region = eu", True),
        (group(EU), "user.region = eu", False),
        (group(EU), "has group", True),
    ],
)
def test_matches_one_entity_for_list_where(entity: Entity, condition: str, expected: bool) -> None:
    assert parse_condition(condition).matches(entity, NOW) is expected


def test_explain_per_candidate() -> None:
    facts = Facts(
        user=user(
            {"tier": "free", "beta": ""}, first_seen=datetime(2026, 11, 12, 12, 0, tzinfo=UTC)
        ),
        group=group({"region": "eu"}),
        now=NOW,
    )
    condition = parse_condition("tier = free and (beta is true or joined within 30d)")
    assert condition.explain(facts) == [
        'as user alice: tier = free: "free" matches, holds',
        'as user alice: beta is true: "" is falsy, fails',
        "as user alice: joined within 30d: user alice first seen 2026-11-12 12:00 UTC,"
        " 15.0 days ago, holds",
        "as group acme: tier = free: missing, fails",
        "as group acme: beta is true: missing, fails",
        "as group acme: joined within 30d: group acme has no first-seen time, fails",
        "applies to user alice",
    ]


def test_explain_scoped_and_keywords() -> None:
    facts = Facts(user=user({"n": 3.0}), group=group({"region": "us"}), now=NOW)
    condition = parse_condition("user.n = 3 and not has group or group.region != eu or always")
    assert condition.explain(facts) == [
        'user.n = 3: "3" matches, holds',
        "has group: the request names group acme",
        'group.region != eu: "us" differs, holds',
        "always: always holds",
        "applies to user alice and group acme",
    ]
    anonymous = Facts(user=None, group=None, now=NOW)
    assert parse_condition("user.joined within 7d").explain(anonymous) == [
        "user.joined within 7d: no user named, fails",
        "no match",
    ]
    assert parse_condition("tier exists").explain(anonymous) == [
        "the request names no user or group to test",
        "no match",
    ]
    assert parse_condition("always").explain(anonymous) == [
        "always: always holds",
        "matches the request (it names no user or group)",
    ]


@pytest.mark.parametrize(
    ("text", "message", "pos"),
    [
        ("", "empty condition", 0),
        ("   ", "empty condition", 0),
        ("user.tier =", 'expected a value after "=" at position 10', 10),
        ("user.tier = )", 'expected a value after "=", found ")" at position 12', 12),
        ("tier = and", 'expected a value after "=", found "and" at position 7', 7),
        ("and x = 1", 'unexpected "and" at position 0', 0),
        ("x = 1 or or y = 2", 'unexpected "or" at position 9', 9),
        ("tier = free and", 'expected a condition after "and" at position 12', 12),
        ("not", 'expected a condition after "not" at position 0', 0),
        ("()", 'unexpected ")" at position 1', 1),
        ("'free'", "unexpected 'free' at position 0", 0),
        ("(tier = free", 'unclosed "(" at position 0', 0),
        ("((a = 1) or (b = 2)", 'unclosed "(" at position 0', 0),
        ("tier = free)", 'unexpected ")" at position 11 (expected "and", "or" or the end)', 11),
        ("(a = 1 b = 2)", 'unexpected "b" at position 7 (expected "and", "or" or ")")', 7),
        (
            "tier = free plan = x",
            'unexpected "plan" at position 12 (expected "and", "or" or the end)',
            12,
        ),
        ("tier = free adn plan = x", 'unknown word "adn" at position 12 (did you mean "and"?)', 12),
        ("user tier = free", 'unknown word "tier" at position 5 (did you mean "user.tier"?)', 5),
        ("org.x = 1", 'unknown scope "org" at position 0 (use user. or group.)', 0),
        ("a = 1 or usr.tier = free", 'unknown scope "usr" at position 9 (did you mean "user"?)', 9),
        ("org.joined within 3d", 'unknown scope "org" at position 0 (use user. or group.)', 0),
        ("plan.name = pro", 'unknown scope "plan" at position 0 (use user. or group.)', 0),
        ("user = x", '"user" needs a field name, like user.tier, at position 0', 0),
        ("user. = x", 'invalid field name "user." at position 0', 0),
        ("a:b = 1", 'invalid field name "a:b" at position 0', 0),
        (
            "joined within 30x",
            'invalid duration "30x" at position 14 (like 30m, 24h, 7d or 2w)',
            14,
        ),
        ("joined within 0d", 'invalid duration "0d" at position 14 (like 30m, 24h, 7d or 2w)', 14),
        ("joined within", 'expected a duration after "within" at position 7', 7),
        ("joined within (", 'expected a duration after "within", found "(" at position 14', 14),
        (
            "user.joined 30d",
            'expected "within" after "user.joined", found "30d" at position 12',
            12,
        ),
        ("joined withn 3d", 'unknown word "withn" at position 7 (did you mean "within"?)', 7),
        ('tier = "free', "unterminated string starting at position 7", 7),
        ("tier = 'free\\'", "unterminated string starting at position 7", 7),
        ("tier is maybe", 'expected "true" or "false" after "is", found "maybe" at position 8', 8),
        ("tier is ture", 'unknown word "ture" at position 8 (did you mean "true"?)', 8),
        ("tier is", 'expected "true" or "false" after "is" at position 5', 5),
        ("has grop", 'unknown word "grop" at position 4 (did you mean "group"?)', 4),
        ("has", 'expected "group" after "has" at position 0', 0),
        ("tier", 'expected "=", "!=", "is" or "exists" after "tier" at position 0', 0),
        (
            "tier eq free",
            'expected "=", "!=", "is" or "exists" after "tier", found "eq" at position 5',
            5,
        ),
        ("tier exist", 'unknown word "exist" at position 5 (did you mean "exists"?)', 5),
        ("alway", 'unknown word "alway" at position 0 (did you mean "always"?)', 0),
        ("tier ! free", 'unexpected character "!" at position 5', 5),
        ("tier == free", 'expected a value after "=", found "=" at position 6', 6),
        ("tier = free;", 'unexpected character ";" at position 11', 11),
        ("(" * 70 + "a = 1" + ")" * 70, "condition nested too deeply at position 64", 64),
    ],
)
def test_error_messages_point_at_the_token(text: str, message: str, pos: int) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert (str(info.value), info.value.pos) == (message, pos)


def test_condition_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        parse_condition("tier =")


@pytest.mark.parametrize(
    "text",
    [
        "always",
        "has group",
        "user.tier=free",
        "tier!=free",
        "(tier=free)and(region=eu)",
        "not(has group)",
        "user.tier = free and not group.region = eu or joined within 1h",
        "group.joined within 2w",
        "x is false",
        "é = ü",
    ],
)
def test_valid_conditions_parse_and_keep_their_text(text: str) -> None:
    assert parse_condition(text).text == text


def test_terms_are_the_ones_that_read_an_entity_in_order() -> None:
    condition = parse_condition(
        "always and (tier = free or not user.joined within 30d) and has group and group.x exists"
    )
    assert [t.text for t in condition.terms()] == [
        "tier = free",
        "user.joined within 30d",
        "group.x exists",
    ]
    assert (condition.refs, condition.per_candidate) == (frozenset({"", "user", "group"}), True)

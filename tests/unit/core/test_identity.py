from __future__ import annotations

import json
from typing import Any

import pytest

from waystone_cli.core.errors import IdentityError
from waystone_cli.core.identity import (
    EntityRef,
    Identity,
    combine,
    identity_from_headers,
    parse_identity,
    pop_identity,
)

ALICE = EntityRef("alice")
ACME = EntityRef("acme")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"user": "alice"}', Identity(user=ALICE)),
        ('{"group": "acme"}', Identity(group=ACME)),
        ("{}", Identity()),
        ({"user": "alice", "group": "acme"}, Identity(user=ALICE, group=ACME)),
        (
            '{"user": {"id": "user_42", "metadata": {"tier": "free", "seats": 3, "beta": true}}}',
            Identity(user=EntityRef("user_42", {"tier": "free", "seats": 3, "beta": True})),
        ),
        ({"group": {"id": "acme.eu"}}, Identity(group=EntityRef("acme.eu"))),
        ('{"user": null}', Identity()),
        ('{"user": "alice@example.com"}', Identity(user=EntityRef("alice@example.com"))),
        (json.dumps({"user": "a" * 128}), Identity(user=EntityRef("a" * 128))),
    ],
)
def test_parse_identity_accepts(value: Any, expected: Identity) -> None:
    assert parse_identity(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "{bad",
            "metadata.waystone: invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("", "metadata.waystone: invalid JSON: Expecting value: line 1 column 1 (char 0)"),
        ('{"user": NaN}', "metadata.waystone: invalid JSON: NaN is not valid JSON"),
        ('"alice"', "metadata.waystone: expected a JSON object, got a string"),
        (42, "metadata.waystone: expected a JSON-encoded string or an object, got a number"),
        (
            '{"usr": "alice"}',
            'metadata.waystone: unknown key "usr" (expected "user" and/or "group")',
        ),
        ('{"user": 42}', 'metadata.waystone.user: expected a string or an object with "id"'),
        (
            '{"user": {"name": "x"}}',
            'metadata.waystone.user: expected a string or an object with "id"',
        ),
        ('{"user": ""}', "metadata.waystone.user: must not be empty"),
        ('{"user": {"id": ""}}', "metadata.waystone.user.id: must not be empty"),
        ('{"user": {"id": 7}}', "metadata.waystone.user.id: expected a string, got a number"),
        (json.dumps({"group": "a" * 129}), "metadata.waystone.group: over 128 characters"),
        ('{"user": {"id": "al\\nice"}}', "metadata.waystone.user.id: contains control characters"),
        ('{"user": "alice\\n"}', "metadata.waystone.user: contains control characters"),
        (
            '{"user": "alice smith"}',
            'metadata.waystone.user: "alice smith" is not a valid id (letters, digits and '
            "._@:+-_, starting with a letter or digit)",
        ),
        (
            '{"user": {"id": "a", "meta": {}}}',
            'metadata.waystone.user: unknown key "meta" (expected "id" and "metadata")',
        ),
        (
            '{"user": {"id": "a", "metadata": []}}',
            "metadata.waystone.user.metadata: expected an object, got an array",
        ),
        (
            '{"user": {"id": "a", "metadata": {"tier": {"x": 1}}}}',
            "metadata.waystone.user.metadata.tier: metadata values must be JSON scalars "
            "(string, number or boolean), got an object",
        ),
        (
            '{"group": {"id": "a", "metadata": {"tier": null}}}',
            "metadata.waystone.group.metadata.tier: metadata values must be JSON scalars "
            "(string, number or boolean), got null",
        ),
        (
            '{"group": {"id": "a", "metadata": {"": 1}}}',
            'metadata.waystone.group.metadata: invalid key "" (1 to 64 characters, no control characters)',
        ),
        (
            json.dumps({"user": {"id": "a", "metadata": {"k": "x" * 17000}}}),
            "metadata.waystone: over 16 KiB",
        ),
        ({"user": {"id": "a", "metadata": {"k": "x" * 17000}}}, "metadata.waystone: over 16 KiB"),
    ],
)
def test_parse_identity_refuses_with_a_message_naming_the_path(value: Any, message: str) -> None:
    with pytest.raises(IdentityError) as err:
        parse_identity(value)
    assert str(err.value) == message
    assert err.value.status == 400


def test_parse_identity_names_the_given_field_in_errors() -> None:
    with pytest.raises(IdentityError, match=r"^metadata\.user: must not be empty$"):
        parse_identity('{"user": ""}', where="metadata")


def test_headers_name_user_and_group_and_are_checked() -> None:
    assert identity_from_headers(" alice ", "acme") == Identity(user=ALICE, group=ACME)
    assert identity_from_headers(None, None) == Identity()
    with pytest.raises(IdentityError, match=r"^X-Waystone-Group: must not be empty$"):
        identity_from_headers(None, "")
    with pytest.raises(IdentityError, match=r"^X-Waystone-User: over 128 characters$"):
        identity_from_headers("u" * 129, None)


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (Identity(user=ALICE), Identity(group=ACME), Identity(user=ALICE, group=ACME)),
        (Identity(), Identity(user=ALICE), Identity(user=ALICE)),
        (
            Identity(user=EntityRef("alice", {"tier": "pro"})),
            Identity(user=ALICE),
            Identity(user=EntityRef("alice", {"tier": "pro"})),
        ),
        (Identity(), Identity(), Identity()),
    ],
)
def test_combine_merges_body_and_headers(
    body: Identity, headers: Identity, expected: Identity
) -> None:
    assert combine(body, headers) == expected


def test_combine_refuses_two_different_users() -> None:
    with pytest.raises(IdentityError) as err:
        combine(Identity(user=ALICE), Identity(user=EntityRef("bob")))
    assert (
        str(err.value)
        == 'metadata.waystone.user ("alice") and X-Waystone-User ("bob") name different users'
    )


def test_pop_identity_strips_waystone_and_keeps_other_metadata_without_mutating() -> None:
    body = {"model": "m", "metadata": {"waystone": '{"user": "alice"}', "trace": "t1"}}
    identity, forwarded = pop_identity(body)
    assert identity == Identity(user=ALICE)
    assert forwarded == {"model": "m", "metadata": {"trace": "t1"}}
    assert body == {"model": "m", "metadata": {"waystone": '{"user": "alice"}', "trace": "t1"}}


def test_pop_identity_drops_metadata_that_only_held_waystone() -> None:
    identity, forwarded = pop_identity({"model": "m", "metadata": {"waystone": {"group": "acme"}}})
    assert (identity, forwarded) == (Identity(group=ACME), {"model": "m"})


@pytest.mark.parametrize(
    "body",
    [{"model": "m"}, {"model": "m", "metadata": None}, {"model": "m", "metadata": {"k": "v"}}],
)
def test_pop_identity_without_waystone_returns_the_body_itself(body: dict[str, Any]) -> None:
    identity, forwarded = pop_identity(body)
    assert identity == Identity()
    assert forwarded is body


def test_pop_identity_refuses_metadata_that_is_not_an_object() -> None:
    with pytest.raises(IdentityError, match=r"^metadata: expected an object, got a string$"):
        pop_identity({"metadata": "alice"})


def test_pop_identity_refuses_bad_identity() -> None:
    with pytest.raises(IdentityError, match=r"^metadata\.waystone: invalid JSON"):
        pop_identity({"metadata": {"waystone": "{"}})


# --- identity strings parsed once (core/identity.py: _PARSED) ------------------------------


def test_a_string_seen_before_gives_the_same_identity_without_parsing_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from waystone_cli.core import identity as module

    monkeypatch.setattr(module, "_PARSED", {})
    text = json.dumps({"user": {"id": "cached-1", "metadata": {"tier": "pro"}}, "group": "g1"})
    first = parse_identity(text)
    calls = []
    monkeypatch.setattr(module, "_decode", lambda *a: calls.append(a))
    second = parse_identity(text)
    assert second is first and calls == []
    assert first == Identity(EntityRef("cached-1", {"tier": "pro"}), EntityRef("g1"))
    assert parse_identity(json.loads(text)) == first  # an object parses to the same value


def test_cached_metadata_is_read_only() -> None:
    ident = parse_identity(json.dumps({"user": {"id": "ro-1", "metadata": {"tier": "pro"}}}))
    assert ident.user is not None
    with pytest.raises(TypeError):
        ident.user.metadata["tier"] = "free"  # type: ignore[index]


def test_a_string_that_fails_is_refused_every_time_and_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from waystone_cli.core import identity as module

    monkeypatch.setattr(module, "_PARSED", {})
    bad = json.dumps({"user": "a\nb"})
    for _ in range(2):
        with pytest.raises(IdentityError, match="control characters"):
            parse_identity(bad)
    assert module._PARSED == {}


def test_the_cache_is_emptied_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    from waystone_cli.core import identity as module

    monkeypatch.setattr(module, "_PARSED", {})
    monkeypatch.setattr(module, "_PARSED_MAX", 3)
    texts = [json.dumps({"user": f"full-{i}"}) for i in range(5)]
    for text in texts:
        parse_identity(text)
    assert len(module._PARSED) <= 3
    assert [parse_identity(t).user for t in texts] == [EntityRef(f"full-{i}") for i in range(5)]

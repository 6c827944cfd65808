import pytest

from waystone_cli.core.cluster import instance_name
from waystone_cli.core.config import parse_config
from waystone_cli.core.errors import UsageError
from waystone_cli.core.workers import WORKER_VARIABLE, require_shared_servers, worker_names


def test_one_worker_needs_no_shared_server() -> None:
    require_shared_servers(parse_config({}), 1)


def test_several_workers_without_both_keys_name_both() -> None:
    with pytest.raises(UsageError) as caught:
        require_shared_servers(parse_config({}), 2)
    assert caught.value.message == (
        "serve --workers 2 needs [cluster] redis_url and [ledger] url: the workers share "
        "their counters through Redis and their ledger in Postgres (one DuckDB file "
        "opens in one process only)"
    )


def test_several_workers_name_only_the_missing_key() -> None:
    only_redis = parse_config({"cluster": {"redis_url": "redis://127.0.0.1:1/0"}})
    with pytest.raises(UsageError, match=r"needs \[ledger\] url:"):
        require_shared_servers(only_redis, 3)
    only_ledger = parse_config({"ledger": {"url": "postgresql://u@127.0.0.1:1/db"}})
    with pytest.raises(UsageError, match=r"needs \[cluster\] redis_url:"):
        require_shared_servers(only_ledger, 3)


def test_several_workers_with_both_keys_pass() -> None:
    both = parse_config(
        {"cluster": {"redis_url": "env:R"}, "ledger": {"url": "postgresql://u@127.0.0.1:1/db"}}
    )
    require_shared_servers(both, 4)


def test_workers_are_named_after_their_parent() -> None:
    assert worker_names("eu-1", 3) == ["eu-1-w1", "eu-1-w2", "eu-1-w3"]


def test_a_worker_takes_the_name_its_parent_gave_even_over_the_config() -> None:
    named = parse_config({"cluster": {"instance": "eu-1"}})
    assert instance_name(named, {WORKER_VARIABLE: "eu-1-w2"}) == "eu-1-w2"

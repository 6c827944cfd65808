import pytest

from waystone_cli.core.cluster import instance_name, server_url
from waystone_cli.core.config import parse_config
from waystone_cli.core.errors import ConfigError


def test_instance_name_prefers_config_then_environment_then_host_pid() -> None:
    named = parse_config({"cluster": {"instance": "eu-1"}})
    assert instance_name(named, {"WAYSTONE_INSTANCE": "x"}) == "eu-1"
    plain = parse_config({})
    assert instance_name(plain, {"WAYSTONE_INSTANCE": "x"}) == "x"
    assert instance_name(plain, {}, pid=42).endswith("-42")


def test_server_url_reads_env_references() -> None:
    assert server_url("redis://127.0.0.1:1/0", "cluster.redis_url", {}) == "redis://127.0.0.1:1/0"
    assert server_url("env:R", "cluster.redis_url", {"R": "redis://h:2/0"}) == "redis://h:2/0"
    assert server_url(None, "cluster.redis_url", {}) is None
    with pytest.raises(ConfigError, match="cluster.redis_url: environment variable R is not set"):
        server_url("env:R", "cluster.redis_url", {})


def test_cluster_and_ledger_url_are_validated() -> None:
    c = parse_config(
        {
            "cluster": {"redis_url": "env:R", "on_redis_error": "local"},
            "ledger": {"url": "postgresql://u@127.0.0.1:5/db"},
        }
    )
    assert c.cluster.on_redis_error == "local"
    assert c.ledger.url == "postgresql://u@127.0.0.1:5/db"
    with pytest.raises(ConfigError, match="cluster.on_redis_error"):
        parse_config({"cluster": {"on_redis_error": "maybe"}})
    with pytest.raises(ConfigError, match="cluster.redis_url"):
        parse_config({"cluster": {"redis_url": "http://x"}})
    with pytest.raises(ConfigError, match="ledger.url"):
        parse_config({"ledger": {"url": "mysql://x"}})
    with pytest.raises(ConfigError, match="cluster.typo"):
        parse_config({"cluster": {"typo": 1}})

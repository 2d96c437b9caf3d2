"""The private broker `styledrop serve` starts: a password, loopback only, its settings."""

from __future__ import annotations

import shutil
import stat

import pytest
import redis

from worker.local_redis import LocalRedis, free_port


@pytest.fixture
def server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-packages installs it)")
    local = LocalRedis(tmp_path / "redis", port=free_port(), persistent=False, databases=4)
    local.start()
    yield local
    local.stop()


def test_clients_need_the_password(server):
    assert server.client(0).ping()
    stranger = redis.Redis(host=server.host, port=server.port, socket_connect_timeout=1)
    with pytest.raises(redis.exceptions.AuthenticationError):
        stranger.ping()
    assert redis.Redis.from_url(server.url(1)).ping()


def test_password_is_in_a_private_file_not_on_the_command_line(server):
    config = server.folder / "redis.conf"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert server.password in config.read_text()
    assert all(server.password not in str(arg) for arg in server.process.args)


def test_database_count_and_persistence_follow_the_settings(server):
    server.client(3).set("k", "v")
    with pytest.raises(redis.exceptions.ResponseError, match="index is out of range"):
        server.client(4).ping()
    assert server.client(0).config_get("appendonly") == {"appendonly": "no"}


def test_stop_returns_the_exit_code_once(server):
    assert server.stop() == 0
    assert server.stop() is None

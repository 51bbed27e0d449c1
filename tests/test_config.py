"""Configuration: environment over mosaic.toml over defaults; bad values stop
the start with one line naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from host.config import load_config
from host.errors import ConfigError


def test_defaults_put_everything_in_the_instance_folder(tmp_path):
    cfg = load_config({"instance_path": tmp_path / "inst"}, environ={})
    assert cfg.database_url == f"sqlite:///{tmp_path / 'inst' / 'mosaic.db'}"
    assert cfg.plugins is None, "unset means every installed plugin"
    assert (tmp_path / "inst").is_dir()


def test_instance_defaults_to_instance_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(environ={})
    assert cfg.instance_path == tmp_path / "instance"


def test_secret_key_is_generated_once_and_kept(tmp_path):
    first = load_config({"instance_path": tmp_path}, environ={}).secret_key
    second = load_config({"instance_path": tmp_path}, environ={}).secret_key
    assert first == second and len(first) >= 32
    assert oct(os.stat(tmp_path / "secret_key").st_mode & 0o777) == "0o600"


def test_plugins_allowlist_from_environment(tmp_path):
    env = {"MOSAIC_INSTANCE": str(tmp_path), "MOSAIC_PLUGINS": " sales, reports ,"}
    assert load_config(environ=env).plugins == ["sales", "reports"]
    assert load_config(environ={**env, "MOSAIC_PLUGINS": ""}).plugins == [], "empty means the host alone"


def test_environment_wins_over_toml(tmp_path):
    (tmp_path / "mosaic.toml").write_text('plugins = ["sales"]\nmail_from = "crm@example.com"\n')
    cfg = load_config(environ={"MOSAIC_INSTANCE": str(tmp_path), "MOSAIC_PLUGINS": "service"})
    assert cfg.plugins == ["service"]
    assert cfg.mail_from == "crm@example.com"


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"MOSAIC_REDIS_URL": "localhost:6379"}, "Must be a redis:// URL."),
        ({"MOSAIC_SMTP_URL": "mail.example.com"}, "Must be an smtp:// or smtps:// URL."),
        ({"MOSAIC_MAX_CONTENT_LENGTH": "lots"}, "Not a valid integer."),
        ({"MOSAIC_SECRET_KEY": "short"}, "Shorter than minimum length 16."),
    ],
)
def test_bad_environment_value_names_the_variable(tmp_path, env, expected):
    with pytest.raises(ConfigError) as info:
        load_config(environ={"MOSAIC_INSTANCE": str(tmp_path), **env})
    assert str(info.value) == f"{list(env)[0]}: {expected}"


def test_bad_override_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: max_content_length: Must be greater than or equal to 1024.$"):
        load_config({"instance_path": tmp_path, "max_content_length": 10}, environ={})


def test_bad_toml_value_names_the_key(tmp_path):
    (tmp_path / "mosaic.toml").write_text("mail_from = \"not an address\"\n")
    with pytest.raises(ConfigError, match=r"^mosaic.toml: mail_from: Not a valid email address.$"):
        load_config(environ={"MOSAIC_INSTANCE": str(tmp_path)})


def test_unknown_toml_key(tmp_path):
    (tmp_path / "mosaic.toml").write_text("databse_url = \"sqlite://\"\n")
    with pytest.raises(ConfigError, match=r"^mosaic.toml: databse_url: unknown setting$"):
        load_config(environ={"MOSAIC_INSTANCE": str(tmp_path)})


def test_broken_toml(tmp_path):
    (tmp_path / "mosaic.toml").write_text("plugins = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(environ={"MOSAIC_INSTANCE": str(tmp_path)})

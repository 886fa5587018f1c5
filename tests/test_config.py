"""Configuration: defaults, refusals with the key's name, environment overrides, data folder."""

import pytest

from greenroom.core.config import ConfigError, load_config, persona_settings, secret
from greenroom.models.catalogue import find


def write(tmp_path, text: str):
    path = tmp_path / "bot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_config_loads_and_runs_without_secrets():
    config = load_config(environ={})
    assert config.persona.default_character == "wren"
    assert config.memory.qdrant_url == ""
    entry = find(config.llm.model)  # the default model installs offline, from the package index
    assert entry is not None and entry.kind == "chat" and entry.source in ("package", "chunks")


def test_unknown_key_is_refused_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'persona.temprature'"):
        load_config(write(tmp_path, "[persona]\ntemprature = 0.5\n"), environ={})


def test_bad_value_names_the_key_and_what_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="'persona.mode'.*'chat' or 'haruhi2'"):
        load_config(write(tmp_path, '[persona]\nmode = "novel"\n'), environ={})
    with pytest.raises(ConfigError, match="'dispatch.lane_depth'"):
        load_config(write(tmp_path, "[dispatch]\nlane_depth = 0\n"), environ={})
    with pytest.raises(ConfigError, match="'bot.timezone': unknown time zone 'Mars/Base' \\(an IANA name"):
        load_config(write(tmp_path, '[bot]\ntimezone = "Mars/Base"\n'), environ={})
    assert load_config(write(tmp_path, '[bot]\ntimezone = "Asia/Shanghai"\n'), environ={}).bot.timezone


def test_broken_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[bot\n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml", environ={})


def test_environment_overrides_and_data_dir_precedence(tmp_path):
    path = write(tmp_path, '[bot]\ndata_dir = "here"\n')
    assert load_config(path, environ={}).data_path() == tmp_path / "here"
    env = {"GREENROOM_DATA_DIR": str(tmp_path / "env"), "GREENROOM__PERSONA__K": "7"}
    config = load_config(path, environ=env)
    assert config.data_path() == tmp_path / "env" and config.persona.k == 7
    assert load_config(path, data_dir=str(tmp_path / "flag"), environ=env).data_path() == tmp_path / "flag"


def test_persona_settings_layer_mode_defaults_config_and_character(tmp_path):
    config = load_config(write(tmp_path, "[persona]\nhistory_budget = 300\n"), environ={}).persona
    chat = persona_settings(config, {})
    assert (chat["k"], chat["history_budget"]) == (5, 300)
    faithful = persona_settings(config, {"mode": "haruhi2"})
    assert (faithful["k"], faithful["story_budget"], faithful["history_budget"]) == (19, 1500, 300)
    assert persona_settings(config, {"mode": "haruhi2", "history_budget": 1200})["history_budget"] == 1200


def test_secrets_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "  s3cret ")
    assert secret("MY_TOKEN") == "s3cret"
    monkeypatch.delenv("MY_TOKEN")
    assert secret("MY_TOKEN") is None


def test_the_old_model_slots_setting_says_where_it_went(tmp_path):
    with pytest.raises(ConfigError, match="'dispatch.model_slots' is now 'llm.slots'"):
        load_config(write(tmp_path, "[dispatch]\nmodel_slots = 2\n"), environ={})


def test_a_plugins_own_settings_and_secrets(tmp_path, monkeypatch):
    from greenroom.core.config import secret_values

    monkeypatch.setenv("ECHO_TOKEN", "echo-secret-123")
    config = load_config(write(tmp_path, '[plugins.echo]\nenabled = true\ntoken_env = "ECHO_TOKEN"\n'), environ={})
    assert config.plugins["echo"] == {"enabled": True, "token_env": "ECHO_TOKEN"}
    assert "echo-secret-123" in secret_values(config)  # kept out of the logs like the built-in secrets

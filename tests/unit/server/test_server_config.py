"""ServerConfig: the operator's contract. camelCase, extra keys refused, errors name the field."""

from __future__ import annotations

import json

import pytest

from personalai_server.config import ConfigError, load_config, parse_config

pytestmark = pytest.mark.unit

MINIMAL = {"persona": {"displayName": "Luke", "personalAI": "luke"}, "engine": {"baseModel": "/models/tiny"}}


def test_minimal_config_gets_the_spec_defaults():
    config = parse_config(MINIMAL)
    assert config.engine.kind == "local" and config.adapter.version is None
    assert config.conversation.history_window == 10 and config.conversation.max_tokens == 256
    assert set(config.conversation.personality_modes) >= {"wise", "nostalgic", "playful"}
    assert config.limits.concurrent_streams == 4 and config.listen.port == 8080


def test_full_example_from_the_readme_shape(tmp_path):
    data = {
        **MINIMAL,
        "engine": {"kind": "vllm", "url": "http://vllm:8000", "baseModel": "mistralai/Mistral-7B-Instruct-v0.3",
                   "quantization": "nf4", "maxLoadedAdapters": 3},
        "adapter": {"version": "v1-3f9a2c1b", "dir": "/artifacts"},
        "conversation": {"historyWindow": 10, "defaultTemperature": 0.7, "maxTokens": 256, "retentionDays": 30,
                         "defaultMode": "wise", "personalityModes": {"wise": {"systemPrompt": "You are {displayName}.", "temperature": 0.6, "topP": 0.9}}},
        "storage": {"dataDir": "/data"}, "auth": {"tokensDir": "/etc/personalai/auth"},
        "limits": {"maxRequestBytes": 65536, "maxMessageChars": 4000, "maxTokens": 1024, "requestsPerMinute": 60, "concurrentStreams": 4},
        "listen": {"host": "0.0.0.0", "port": 8080}, "reloadIntervalSeconds": 5,
    }
    path = tmp_path / "server.json"
    path.write_text(json.dumps(data))
    config = load_config(path)
    assert config.engine.url == "http://vllm:8000" and config.adapter.path_for("v1-3f9a2c1b").name == "v1-3f9a2c1b"
    yaml_path = tmp_path / "server.yaml"
    yaml_path.write_text("persona: {displayName: Luke, personalAI: luke}\nengine: {baseModel: /m}\n")
    assert load_config(yaml_path).persona.display_name == "Luke"


@pytest.mark.parametrize("change, field", [
    ({"engine": {"baseModel": "/m", "kind": "tgi"}}, "engine.url"),
    ({"engine": {"baseModel": "/m", "colour": 1}}, "engine.colour"),
    ({"conversation": {"defaultMode": "grumpy"}}, "conversation.defaultMode"),
    ({"conversation": {"personalityModes": {"wise": {"systemPrompt": "You are {user_text}"}}}}, "systemPrompt"),
    ({"conversation": {"maxTokens": 2048}}, "limits.maxTokens"),
    ({"adapter": {"version": "../etc"}}, "adapter.version"),
    ({"limits": {"requestsPerMinute": 0}}, "limits.requestsPerMinute"),
])
def test_bad_config_names_the_field(change, field):
    with pytest.raises(ConfigError) as raised:
        parse_config({**MINIMAL, **change})
    assert field in str(raised.value)


def test_unreadable_or_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text('{"persona": ')
    with pytest.raises(ConfigError, match="not valid JSON/YAML"):
        load_config(broken)


def test_paths_go_through_the_prefix(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "server.json").write_text(json.dumps(MINIMAL))
    monkeypatch.setenv("PERSONALAI_PATH_PREFIX", str(tmp_path))
    config = load_config("/etc/server.json")
    assert config.adapter.path_for("v1") == tmp_path / "artifacts" / "v1"

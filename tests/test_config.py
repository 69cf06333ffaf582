"""Settings precedence (defaults < YAML < env < CLI) and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.config import Settings, load_settings
from voicebot.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


def test_cpu_fallback_profile_pins_every_auto_value() -> None:
    profile = load_settings(REPO / "configs" / "cpu_fallback.yaml")
    assert "auto" not in profile.model_dump_json()
    assert profile.stt.whisper.model == "tiny.en" and profile.llm.provider == "llama_cpp"
    assert Settings().stt.whisper.model == "auto"  # the defaults leave the choice to auto-tuning


def test_secrets_come_only_from_their_standard_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk_abc")
    monkeypatch.setenv("AZURE_SPEECH_REGION", "westeurope")
    settings = load_settings()
    assert settings.secrets.groq_api_key is not None
    assert settings.secrets.groq_api_key.get_secret_value() == "gsk_abc"
    assert settings.redacted()["secrets"]["groq_api_key"] == "**********"
    assert "gsk_abc" not in repr(settings)
    with pytest.raises(ConfigError, match="read only from the environment"):
        load_settings(write(tmp_path, "secrets:\n  groq_api_key: x\n"))


def test_yaml_then_env_then_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "server:\n  port: 8001\nllm:\n  max_tokens: 40\n  temperature: 0.9\n")
    assert load_settings(path).server.port == 8001

    monkeypatch.setenv("VOICEBOT_SERVER__PORT", "8002")
    monkeypatch.setenv("VOICEBOT_LLM__MAX_TOKENS", "50")
    from_env = load_settings(path)
    assert from_env.server.port == 8002
    assert from_env.llm.max_tokens == 50
    assert from_env.llm.temperature == 0.9  # untouched YAML values survive a partial env override

    from_cli = load_settings(path, {"server": {"port": 8003}})
    assert from_cli.server.port == 8003
    assert from_cli.llm.max_tokens == 50


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_CONFIG", str(write(tmp_path, "server:\n  port: 9100\n")))
    assert load_settings().server.port == 9100


def test_typo_in_yaml_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "stt:\n  whisper:\n    modle: base\n")
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert "stt.whisper.modle" in str(error.value)
    assert "unknown key" in str(error.value)
    assert str(path) in str(error.value)


def test_invalid_value_names_value_and_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, "llm:\n  provider: gpt5\n"))
    assert "llm.provider" in str(error.value) and "'gpt5'" in str(error.value)

    monkeypatch.setenv("VOICEBOT_SERVER__PORT", "seventy")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "VOICEBOT_SERVER__PORT" in str(error.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("server: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "mapping")],
)
def test_unreadable_profile(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(write(tmp_path, text))


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_daily_api_url_honours_dailys_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAILY_API_URL", "http://127.0.0.1:9/v1")
    assert load_settings().daily.api_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("VOICEBOT_DAILY__API_URL", "http://127.0.0.1:10/v1")
    assert load_settings().daily.api_url == "http://127.0.0.1:10/v1"
    monkeypatch.delenv("DAILY_API_URL")
    monkeypatch.delenv("VOICEBOT_DAILY__API_URL")
    settings = load_settings()
    assert settings.daily.api_url == "https://api.daily.co/v1"
    assert settings.daily.max_participants == 2


def test_tracing_is_off_by_default_and_set_from_yaml_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().observability.tracing.enabled is False
    path = write(tmp_path, "observability:\n  tracing:\n    service_name: bot-eu\n")
    monkeypatch.setenv("VOICEBOT_OBSERVABILITY__TRACING__ENABLED", "true")
    tracing = load_settings(path).observability.tracing
    assert tracing.enabled and tracing.service_name == "bot-eu"
    with pytest.raises(ConfigError, match="otlp_endpiont"):
        load_settings(write(tmp_path, "observability:\n  tracing:\n    otlp_endpiont: x\n"))

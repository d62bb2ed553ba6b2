"""Secrets in settings: errors that never echo a value, values read from *_FILE variables and a secrets dir."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.main import main
from config.settings import Settings, SettingsError, secret_fields, settings_problems

PASSWORD = "hunter2-Correct-Horse-Battery"  # a test value that must never be printed
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROLLWATCH_"):
            monkeypatch.delenv(name)


def test_every_setting_holding_a_secret_can_come_from_a_file() -> None:
    assert {"sasl_password", "webhooks", "dashboard_tokens", "database_url"} <= set(secret_fields(Settings))
    assert "bootstrap_servers" not in secret_fields(Settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ROLLWATCH_WEB_PORT", PASSWORD),
        ("ROLLWATCH_SECURITY_PROTOCOL", PASSWORD),
        ("ROLLWATCH_BOOTSTRAP_SERVERS", PASSWORD),  # its own check names the bad server
        ("ROLLWATCH_WEBHOOKS", json.dumps({"330": {"url": "https://cms.example/hook", "secret": PASSWORD}})),
        ("ROLLWATCH_WEBHOOKS", json.dumps({"330": {"url": f"http://{PASSWORD}.example/", "secret": WEBHOOK_SECRET}})),
        ("ROLLWATCH_WEBHOOKS", "{" + PASSWORD),
        ("ROLLWATCH_RETENTION_YEARS_BY_LA", json.dumps({"330": PASSWORD})),
    ],
    ids=["integer", "choice", "validator", "webhook secret", "webhook url", "bad JSON", "nested integer"],
)
def test_a_bad_setting_is_named_and_its_value_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    assert main(["cases", "list"]) == 2

    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "hunter2" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert lines and all(line.startswith("rollwatch: invalid setting ROLLWATCH_") for line in lines)
    assert any(variable in line for line in lines)


def test_the_real_command_line_shows_no_value_either() -> None:
    environment = {**os.environ, "ROLLWATCH_SASL_PASSWORD": PASSWORD, "ROLLWATCH_BROKER_PORT": PASSWORD}
    environment = {k: v for k, v in environment.items() if not k.startswith("ROLLWATCH_") or k in (
        "ROLLWATCH_SASL_PASSWORD", "ROLLWATCH_BROKER_PORT")}

    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "cases", "list"], cwd=REPO, env=environment,
        capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 2
    assert PASSWORD not in done.stdout + done.stderr
    assert "ROLLWATCH_BROKER_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_pydantic_messages_that_quote_the_input_are_cut() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(bootstrap_servers=PASSWORD)

    [line] = settings_problems(raised.value)
    assert line.startswith("ROLLWATCH_BOOTSTRAP_SERVERS: ")
    assert PASSWORD not in line and "<value>" in line


def test_a_secret_comes_from_its_file_variable_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(f"  {PASSWORD}\n\n", encoding="utf-8")
    (tmp_path / "webhooks.json").write_text(
        json.dumps({"330": {"url": "https://cms.example/hook", "secret": WEBHOOK_SECRET}}) + "\n", encoding="utf-8"
    )
    (tmp_path / "database").write_text("postgresql+psycopg://rollwatch:pw@db/register\n", encoding="utf-8")
    monkeypatch.setenv("ROLLWATCH_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    monkeypatch.setenv("ROLLWATCH_WEBHOOKS_FILE", str(tmp_path / "webhooks.json"))
    monkeypatch.setenv("ROLLWATCH_DATABASE_URL_FILE", str(tmp_path / "database"))

    settings = Settings()

    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == PASSWORD
    assert settings.webhooks["330"].secret.get_secret_value() == WEBHOOK_SECRET
    assert settings.database_url == "postgresql+psycopg://rollwatch:pw@db/register"


def test_a_variable_set_directly_wins_over_its_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A child process gets the parent's settings as variables and may inherit the _FILE variable as well.
    (tmp_path / "password").write_text("from-the-file", encoding="utf-8")
    monkeypatch.setenv("ROLLWATCH_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    monkeypatch.setenv("ROLLWATCH_SASL_PASSWORD", PASSWORD)

    sasl_password = Settings().sasl_password
    assert sasl_password is not None and sasl_password.get_secret_value() == PASSWORD


def test_an_unreadable_file_is_named_and_the_command_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("ROLLWATCH_SASL_PASSWORD_FILE", str(tmp_path / "missing"))

    with pytest.raises(SettingsError, match="ROLLWATCH_SASL_PASSWORD_FILE: cannot read"):
        Settings()
    assert main(["cases", "list"]) == 2
    assert "ROLLWATCH_SASL_PASSWORD_FILE" in capsys.readouterr().err


def test_a_file_variable_for_a_setting_that_is_no_secret_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "port").write_text("7000", encoding="utf-8")
    monkeypatch.setenv("ROLLWATCH_WEB_PORT_FILE", str(tmp_path / "port"))

    assert Settings().web_port == 6066


def test_secrets_come_from_a_secrets_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "rollwatch_sasl_password").write_text(PASSWORD + "\n", encoding="utf-8")
    (tmp_path / "ROLLWATCH_WEBHOOKS").write_text(
        json.dumps({"331": {"url": "https://cms.example/hook", "secret": WEBHOOK_SECRET}}), encoding="utf-8"
    )
    monkeypatch.setenv("ROLLWATCH_SECRETS_DIR", str(tmp_path))

    settings = Settings()

    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == PASSWORD
    assert settings.webhooks["331"].secret.get_secret_value() == WEBHOOK_SECRET
    assert settings.secrets_dir == tmp_path
    assert Settings(secrets_dir=tmp_path, sasl_username="u").sasl_username == "u"


def test_a_missing_secrets_directory_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROLLWATCH_SECRETS_DIR", str(tmp_path / "nowhere"))

    with pytest.raises(SettingsError, match="ROLLWATCH_SECRETS_DIR"):
        Settings()


def test_settings_from_files_reach_a_child_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PASSWORD, encoding="utf-8")
    monkeypatch.setenv("ROLLWATCH_SASL_PASSWORD_FILE", str(tmp_path / "password"))
    environment = Settings().as_environment()

    assert environment["ROLLWATCH_SASL_PASSWORD"] == PASSWORD


PACKAGES = ("processors", "schemas", "config", "sinks", "web", "streams", "replay", "generator", "cli",
            "localbroker", "bench", "clients/python/rollwatch_client")
#: Fewest random bytes in a generated token, password or secret: 128 bits.
MIN_SECRET_BYTES = 16


def _constants(tree: ast.Module) -> dict[str, int]:
    return {
        target.id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, int)
        for target in node.targets if isinstance(target, ast.Name)
    }


def test_every_generated_token_or_password_has_at_least_128_bits() -> None:
    calls = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            constants = _constants(tree)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = node.func.value
                if not (isinstance(owner, ast.Name) and owner.id == "secrets"):
                    continue
                name = node.func.attr
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                calls.append(where)
                # `random`'s module functions are predictable; `secrets` is the only source allowed here.
                assert name in {"token_urlsafe", "token_hex", "token_bytes", "compare_digest", "choice"}, where
                if name.startswith("token_") and node.args:
                    size = node.args[0]
                    value = size.value if isinstance(size, ast.Constant) else constants.get(getattr(size, "id", ""))
                    assert isinstance(value, int) and value >= MIN_SECRET_BYTES, f"{where}: {value} bytes"
    assert calls  # the scan found the token makers it guards

"""Settings: env prefixes, secrets files, exit status 2 naming a bad setting, prebuilt settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from homesec.settings import (
    BrokerSettings,
    ServiceSettings,
    load_settings,
    prebuild_settings,
    settings_config,
)


class DemoSettings(ServiceSettings):
    model_config = settings_config("HOMESEC_DEMO_")
    fps: float = 10.0


def test_env_prefixes(monkeypatch):
    monkeypatch.setenv("HOMESEC_BROKER_PORT", "1999")
    monkeypatch.setenv("HOMESEC_DEMO_FPS", "2.5")
    monkeypatch.setenv("HOMESEC_DEMO_LOG_LEVEL", "debug")
    s = load_settings(DemoSettings)
    assert s.broker.port == 1999 and s.fps == 2.5 and s.log_level == "DEBUG"


def test_password_file(tmp_path, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("HOMESEC_BROKER_PASSWORD_FILE", str(secret))
    assert BrokerSettings().password.get_secret_value() == "s3cret"


def test_docker_secret_dir(tmp_path, monkeypatch):
    (tmp_path / "homesec_broker_password").write_text("fromsecret")
    monkeypatch.setenv("HOMESEC_SECRETS_DIR", str(tmp_path))
    code = (
        "from homesec.settings import BrokerSettings;"
        "print(BrokerSettings().password.get_secret_value())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fromsecret"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HOMESEC_BROKER_PORT": "notaport"}, "HOMESEC_BROKER_PORT"),
        ({"HOMESEC_DEMO_FPS": "fast"}, "HOMESEC_DEMO_FPS"),
        ({"HOMESEC_BROKER_PASSWORD_FILE": "/nonexistent/pw"}, "HOMESEC_BROKER"),
        ({"HOMESEC_BROKER_TOPIC_PREFIX": "bad/#"}, "HOMESEC_BROKER_TOPIC_PREFIX"),
    ],
)
def test_bad_setting_exits_2_naming_it(env, named, monkeypatch, capsys):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_password_is_never_printed(monkeypatch, capsys):
    monkeypatch.setenv("HOMESEC_BROKER_PASSWORD", "hunter2")
    monkeypatch.setenv("HOMESEC_BROKER_PORT", "0")
    with pytest.raises(SystemExit):
        load_settings(DemoSettings)
    assert "hunter2" not in capsys.readouterr().err
    assert "hunter2" not in repr(BrokerSettings(password="hunter2", port=1883))


def test_prebuilt_settings_are_handed_over_once(monkeypatch):
    """What ``homesec run``'s preloader built is what the next load of that class returns, once;
    the load after builds again from the environment, and overrides always build."""
    monkeypatch.setenv("HOMESEC_DEMO_FPS", "3")
    assert prebuild_settings(DemoSettings) is True
    monkeypatch.setenv("HOMESEC_DEMO_FPS", "4")
    first = load_settings(DemoSettings)
    assert first.fps == 3  # built before the environment changed
    assert load_settings(DemoSettings).fps == 4
    assert prebuild_settings(DemoSettings) is True
    assert load_settings(DemoSettings, fps=5.0).fps == 5  # overrides: never the prebuilt one
    assert load_settings(DemoSettings).fps == 4  # ... which is still there for this load
    assert load_settings(DemoSettings) is not first


def test_settings_that_do_not_prebuild_are_reported_by_the_load(monkeypatch, capsys):
    monkeypatch.setenv("HOMESEC_DEMO_FPS", "fast")
    assert prebuild_settings(DemoSettings) is False
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings)
    assert exc.value.code == 2
    assert "HOMESEC_DEMO_FPS" in capsys.readouterr().err

"""Settings (env, secrets files, Docker secrets, bad values) and ``python -m homesec_uploader``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from uploader_support import age, label, make_event, s3_with_bucket, versions

from homesec.contract import (
    TRAINING_LABELS,
    UPLOAD_REQUEST,
    UPLOADER_STATUS,
    UploaderStatus,
    UploadRequest,
)
from homesec.settings import BrokerSettings, load_settings
from homesec_uploader.s3_store import make_client
from homesec_uploader.settings import UploaderSettings
from support import Collector, ServiceProcess, clean_environ, wait_until


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HOMESEC_"):
            monkeypatch.delenv(name)


def test_defaults_are_local_mode_with_the_documented_values(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = UploaderSettings(data_dir=tmp_path)
    assert settings.mode == "local"
    assert settings.metrics_port == 9105
    assert settings.interval_seconds == 300
    assert settings.key_prefix == "training"
    assert settings.server_side_encryption == "AES256"
    assert settings.training_dir == tmp_path / "training"
    assert settings.ledger_path == tmp_path / "uploader" / "ledger.sqlite"


def test_env_and_secret_files(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key_id").write_text("AKIDSECRETID\n")
    (tmp_path / "secret").write_text("s3cr3t-value\n")
    monkeypatch.setenv("HOMESEC_UPLOADER_BUCKET", "my-bucket")
    monkeypatch.setenv("HOMESEC_UPLOADER_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("HOMESEC_UPLOADER_SERVER_SIDE_ENCRYPTION", "none")
    monkeypatch.setenv("HOMESEC_UPLOADER_AWS_ACCESS_KEY_ID_FILE", str(tmp_path / "key_id"))
    monkeypatch.setenv("HOMESEC_UPLOADER_AWS_SECRET_ACCESS_KEY_FILE", str(tmp_path / "secret"))
    settings = load_settings(UploaderSettings)
    assert settings.mode == "s3"
    assert settings.destination == "s3://my-bucket/training"
    assert settings.aws_access_key_id is not None
    assert settings.aws_access_key_id.get_secret_value() == "AKIDSECRETID"
    assert "s3cr3t-value" not in repr(settings)
    client = make_client(settings)
    assert client._request_signer._credentials.access_key == "AKIDSECRETID"
    assert client.meta.endpoint_url == "http://minio:9000"


def test_docker_secrets_dir(clean_env: None, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "homesec_uploader_aws_access_key_id").write_text("AKIDFROMDOCKER")
    (secrets / "homesec_uploader_aws_secret_access_key").write_text("docker-secret")
    settings = UploaderSettings(data_dir=tmp_path, _secrets_dir=secrets)  # type: ignore[call-arg]
    assert settings.aws_access_key_id is not None
    assert settings.aws_access_key_id.get_secret_value() == "AKIDFROMDOCKER"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOMESEC_UPLOADER_SERVER_SIDE_ENCRYPTION", "rot13"),
        ("HOMESEC_UPLOADER_INTERVAL_SECONDS", "0"),
        ("HOMESEC_UPLOADER_KEY_PREFIX", "../up"),
        ("HOMESEC_UPLOADER_ENDPOINT_URL", "minio:9000"),
    ],
)
def test_bad_value_exits_2_naming_the_variable(
    clean_env: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(UploaderSettings)
    assert exc.value.code == 2
    assert name in capsys.readouterr().err


def test_empty_secret_files_mean_the_standard_chain(clean_env: None, tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    settings = UploaderSettings(
        data_dir=tmp_path,
        bucket="my-bucket",
        aws_access_key_id_file=tmp_path / "empty",
        aws_secret_access_key_file=tmp_path / "empty",
    )
    assert settings.aws_access_key_id is None and settings.aws_secret_access_key is None


def test_unreadable_secret_file_is_a_configuration_error(clean_env: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aws_access_key_id_file: cannot read"):
        UploaderSettings(data_dir=tmp_path, aws_access_key_id_file=tmp_path / "missing")


def test_only_one_of_the_key_pair_is_refused(clean_env: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set both aws_access_key_id and aws_secret_access_key"):
        UploaderSettings(data_dir=tmp_path, aws_access_key_id="AKID")


def test_module_runs_against_s3_with_the_standard_credential_chain(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    s3 = s3_with_bucket("svc-bucket")
    media = tmp_path / "media"
    age(make_event(media, "front", "ev-svc"), 60)  # finished a minute ago (settle time 5 s)
    try:
        with ServiceProcess(
            "uploader",
            broker_settings,
            tmp_path,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="sekr1t-access-key-xyz",
            HOMESEC_UPLOADER_BUCKET="svc-bucket",
            HOMESEC_UPLOADER_ENDPOINT_URL=s3.url,
            HOMESEC_UPLOADER_REGION="us-east-1",
            HOMESEC_UPLOADER_ADDRESSING_STYLE="path",
            HOMESEC_UPLOADER_DELETE_AFTER_UPLOAD="false",
            HOMESEC_UPLOADER_LOG_FORMAT="json",
        ) as uploader:
            client = make_bus("client")
            online: Collector[UploaderStatus] = Collector()
            client.subscribe(UPLOADER_STATUS, online)
            online.wait_for(1, 20)  # the first start creates the uploader's persistent session
            assert online.payloads[0].mode == "s3"
            assert client.publish_confirmed(TRAINING_LABELS, label("ev-svc"))
            assert client.publish_confirmed(UPLOAD_REQUEST, UploadRequest(requested_by="test"))
            wait_until(lambda: len(versions(s3.client(), "svc-bucket")) == 8, 20)
            # the last PUT is visible in the bucket just before the service counts it
            wait_until(
                lambda: "homesec_uploader_uploaded_objects_total 8.0" in uploader.metrics_text(),
                10,
            )
            wait_until(lambda: "homesec_uploader_pending_items 0.0" in uploader.metrics_text(), 10)
            output = uploader.stop(15)
    finally:
        s3.stop()
    assert "sekr1t-access-key-xyz" not in output  # credentials never logged
    assert '"msg": "uploader ready"' in output


def test_unusable_ledger_location_exits_2_with_a_clear_log(
    clean_env: None, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    (tmp_path / "uploader").write_text("a file where the ledger folder should be")
    env = clean_environ() | {
        "HOMESEC_BROKER_PORT": str(broker_settings.port),
        "HOMESEC_UPLOADER_DATA_DIR": str(tmp_path),
        "HOMESEC_UPLOADER_METRICS_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "homesec_uploader"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert b"cannot start the uploader service" in output
    assert str(tmp_path / "uploader").encode() in output

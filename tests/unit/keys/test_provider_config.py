"""Key services misconfigured on the client side: one line, exit 2, before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcii_vault.errors import ConfigError
from pcii_vault.keys import awskms, transit


def test_an_openbao_ca_file_that_is_gone_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAO_TOKEN", "t")
    monkeypatch.setenv("BAO_CACERT", str(tmp_path / "gone.pem"))
    uri = transit.TransitUri.parse("openbao:https://127.0.0.1:8200/transit/keys/kek")
    with pytest.raises(ConfigError, match=r"OpenBao CA file .*gone\.pem"):
        transit._Client(uri)


def test_aws_kms_without_a_region_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="needs a region"):
        awskms.KmsKek.open("awskms:alias/pcii")


def test_aws_kms_takes_its_region_from_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    regions: list[object] = []

    def client(_service: str, **options: object) -> None:
        regions.append(options.get("region_name"))
        raise ConfigError("stop here")

    monkeypatch.setattr(awskms.boto3, "client", client)
    with pytest.raises(ConfigError, match="stop here"):
        awskms.KmsKek.open("awskms:alias/pcii")
    assert regions == ["eu-west-3"]

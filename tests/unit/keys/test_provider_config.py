"""Key services misconfigured on the client side: one line, exit 2, before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcii_vault.errors import ConfigError, InputError
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


@pytest.mark.parametrize("host", ["bao.example.org", "10.0.0.5", "[2001:db8::1]"])
def test_plain_http_to_openbao_beyond_this_host_is_refused(host: str) -> None:
    """A tester's finding: `openbao:http://` was taken for any host, and every wrap sent a
    data key, and every call the token, in cleartext."""
    with pytest.raises(InputError, match="cleartext"):
        transit.TransitUri.parse(f"openbao:http://{host}:8200/transit/keys/kek")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_plain_http_to_openbao_on_this_host_is_taken(host: str) -> None:
    parsed = transit.TransitUri.parse(f"openbao:http://{host}:8200/transit/keys/kek")
    assert parsed.address == f"http://{host}:8200"


def test_an_answer_that_is_not_openbao_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plain http to OpenBao's TLS port answers 400 with no OpenBao error document: that
    is the address, not tampering (it was exit 4 with an empty reason)."""
    import httpx

    monkeypatch.setenv("BAO_TOKEN", "t")

    def plain(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="Client sent an HTTP request to an HTTPS server.\n")

    client = transit._Client(transit.TransitUri.parse("openbao:http://127.0.0.1:1/transit/keys/k"))
    client._http = httpx.Client(
        base_url="http://127.0.0.1:1/v1/", transport=httpx.MockTransport(plain)
    )
    with pytest.raises(ConfigError, match="did not answer as OpenBao"):
        client.call("GET", "transit/keys/k")

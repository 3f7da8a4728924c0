"""A submission logged whose receipt cannot be written: its tracking number, then exit 2.

Found by a tester: the receipt file failing after the submission was logged (a full disk)
gave exit 0 and a warning, where README's "Output files" promises exit 2 for an output
path that fails; the advice it gave (`pcii audit prove`) is an auditor's command. The
write is made to fail in this process, after the path was claimed.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pcii_vault import durable


def _pcii(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from pcii_vault.cli.app import main

    with pytest.raises(SystemExit) as exited:
        main(args)
    return int(exited.value.code or 0)


@pytest.fixture
def owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A vault with an owner; the global options of the owner's commands."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PCII_UNSEAL_SECRET", "receipt-out-tests-secret")
    monkeypatch.delenv("PCII_VAULT", raising=False)
    vault = ["--vault", str(tmp_path / "v")]
    assert (
        _pcii([*vault, "init", "--insecure-fast-kdf", "--admin-key-out", "a.key"], monkeypatch) == 0
    )
    org = "Riverbend Municipal Water Authority"
    add = ["principal", "add", "owner", "--role", "owner", "--org", org, "--level", "private"]
    assert _pcii([*vault, "--as", "a.key", *add, "--key-out", "o.key"], monkeypatch) == 0
    template = [
        "submission",
        "template",
        "--out",
        "s.json",
        "--attachment-out",
        "riverbend-scada-assessment.pdf",
    ]
    assert _pcii(template, monkeypatch) == 0
    return [*vault, "--as", "o.key"]


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receipt's write fails; the vault's own files (the index tag) are written."""
    replace = durable.replace_file

    def full(path: Path, *args: object, **kwargs: object) -> None:
        if Path(path).name == "r.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(durable, "replace_file", full)


def test_the_tracking_number_is_printed_then_exit_2(
    owner: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    _full_disk(monkeypatch)
    submit = [
        *owner,
        "submit",
        "s.json",
        "--attach",
        "riverbend-scada-assessment.pdf",
        "--receipt-out",
        "r.json",
    ]
    assert _pcii(submit, monkeypatch) == 2
    out, err = capsys.readouterr()
    tracking = out.strip()
    assert tracking.startswith("PCII-"), out
    [line] = [x for x in err.splitlines() if x.startswith("pcii: error:")]
    assert f"{tracking} is submitted" in line and "do not submit it again" in line
    assert "No space left on device" in line and "r.json" in line
    assert not Path("r.json").exists()


def test_json_mode_gives_one_object_with_the_submission_and_the_error(
    owner: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    _full_disk(monkeypatch)
    submit = [
        "--json",
        *owner,
        "submit",
        "s.json",
        "--attach",
        "riverbend-scada-assessment.pdf",
        "--receipt-out",
        "r.json",
    ]
    assert _pcii(submit, monkeypatch) == 2
    [document] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert document["exit_code"] == 2, document
    assert document["receipt"] is None
    assert document["tracking_number"] in document["error"]

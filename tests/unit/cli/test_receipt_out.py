"""A submission logged whose receipt cannot be written: its tracking number, then exit 2.

Found by a tester: the receipt file failing after the submission was logged (a full disk)
gave exit 0 and a warning, where README's "Output files" promises exit 2 for an output
path that fails; the advice it gave (`pcii audit prove`) is an auditor's command. The
write is made to fail in this process, after the path was claimed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    through = durable.new_file_via_temporary

    @contextlib.contextmanager
    def full(path: Path, **kwargs: Any) -> Iterator[Path]:
        if Path(path).name == "r.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        with through(path, **kwargs) as tmp:
            yield tmp

    monkeypatch.setattr(durable, "new_file_via_temporary", full)


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


def test_nothing_is_under_the_receipt_name_while_the_submission_is_sent(
    owner: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: the path was claimed as an empty file before the upload, so a
    submit killed meanwhile left a 0-byte "receipt" that blocked the next `--receipt-out`
    of that name and was no receipt. The path is checked, not claimed."""
    from pcii_vault.cli import owner as owner_cli

    seen: list[bool] = []
    real = owner_cli._submit

    def watching(*args: Any, **kwargs: Any) -> Any:
        seen.append(Path("r.json").exists())
        return real(*args, **kwargs)

    monkeypatch.setattr(owner_cli, "_submit", watching)
    submit = [*owner, "submit", "s.json", "--attach", "riverbend-scada-assessment.pdf"]
    assert _pcii([*submit, "--receipt-out", "r.json"], monkeypatch) == 0
    assert seen == [False]
    assert json.loads(Path("r.json").read_text())["format"] == "pcii-receipt/1"

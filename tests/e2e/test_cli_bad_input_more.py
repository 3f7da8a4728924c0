"""More ways a user's input can be wrong: one line, the documented exit code, nothing left.

Each case is a finding of a tester's: a field over its limit, undecodable bytes, a key
file nested thousands deep or never ending, an output path that is taken or unwritable,
a malformed server URL, an out-of-range option, SIGTERM in the middle of an upload.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcii_vault.errors import BackendError, ConfigError
from tests.e2e.conftest import TRAINED, Cli, Result, ServerCli

pytestmark = pytest.mark.slow


def _one_line_error(result: Result, code: int = 2) -> str:
    """The refusal: exit `code`, one `pcii: error:` line, no traceback; its text."""
    assert result.code == code, (result.code, result.err, result.out)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("pcii: error:"), result.err
    return lines[0]


def _build(cli: Cli) -> str:
    """A vault with an owner, the office, an analyst and an auditor; one submission."""
    cli.init()
    cli.add_owner_office_and_water()
    cli.add("auditor", "auditor", "--org", "PCII Officer", "--training-expires", TRAINED)
    bare = str(cli.write_submission("bare.json", attachments=[]))
    return str(cli.ok("submit", bare, who="owner").json()["tracking_number"])


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, str]:
    """One embedded vault for the module (every test here only reads it or is refused)."""
    cli = Cli(tmp_path_factory.mktemp("more"))
    return cli, _build(cli)


@pytest.fixture(scope="module", params=["embedded", "server"])
def both(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cli, str]]:
    """The same vault, embedded and through a real `pcii serve`."""
    root = tmp_path_factory.mktemp(str(request.param))
    cli = Cli(root) if request.param == "embedded" else ServerCli(root)
    try:
        yield cli, _build(cli)
    finally:
        if isinstance(cli, ServerCli):
            cli.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerCli]:
    """The vault behind a real `pcii serve` only (for what only the wire has)."""
    cli = ServerCli(tmp_path_factory.mktemp("served"))
    try:
        _build(cli)
        yield cli
    finally:
        cli.close()


# ----- 1. request fields over their limits, undecodable bytes -----------------------------

OVER_LIMIT = {
    "tracking_number": (["status", "A" * 65], "owner", "record"),
    "purpose": (["get", "{tn}", "--purpose", "p" * 3000, "--out", "{out}"], "water", "purpose"),
    "withdraw_reason": (["withdraw", "{tn}", "--reason", "r" * 100_000], "owner", "reason"),
    "deficient_reason": (["deficient", "{tn}", "--reason", "r" * 3000], "office", "reason"),
    "decontrol_reason": (
        ["decontrol", "{tn}", "--basis", "submitter-request", "--reason", "r" * 3000],
        "office",
        "reason",
    ),
    "destroy_reason": (["destroy", "{tn}", "--reason", "r" * 3000], "office", "reason"),
    "undecodable_tracking": (["destroy", "\udcff", "--reason", "x"], "office", "UTF-8"),
    "undecodable_purpose": (
        ["get", "{tn}", "--purpose", "caf\udce9", "--out", "{out}"],
        "water",
        "UTF-8",
    ),
}


@pytest.mark.parametrize("case", sorted(OVER_LIMIT))
def test_a_field_over_its_limit_is_one_line_exit_2(both: tuple[Cli, str], case: str) -> None:
    cli, tracking = both
    args, who, named = OVER_LIMIT[case]
    out = str(cli.root / f"out-{case}")
    argv = [a.format(tn=tracking, out=out) if "{" in a else a for a in args]
    line = _one_line_error(cli.run(*argv, who=who))
    assert named in line
    assert len(line) < 1100  # a 100,000-character reason is not echoed whole
    assert not Path(out).exists()


UNREADABLE = {
    "zero_width_purpose": (
        ["get", "{tn}", "--purpose", "\u200b", "--out", "{out}"],
        "water",
        "--purpose must state why you need the record",
    ),
    "filler_purpose": (
        ["get", "{tn}", "--purpose", "\u3164", "--out", "{out}"],
        "water",
        "--purpose must state why you need the record",
    ),
    "bidi_purpose": (
        ["get", "{tn}", "--purpose", "drought\u202eplanning", "--out", "{out}"],
        "water",
        "--purpose holds an invisible or bidirectional character (U+202E)",
    ),
    # A tester's finding: bytes that are no UTF-8 were called empty.
    "non_utf8_purpose": (
        ["get", "{tn}", "--purpose", "\udcff", "--out", "{out}"],
        "water",
        "--purpose is not valid UTF-8 text",
    ),
    "non_utf8_reason": (
        ["deficient", "{tn}", "--reason", "\udcff"],
        "office",
        "--reason is not valid UTF-8 text",
    ),
    "non_utf8_withdraw_reason": (
        ["withdraw", "{tn}", "--reason", "\udcff"],
        "owner",
        "--reason is not valid UTF-8 text",
    ),
    "non_utf8_org": (
        ["principal", "add", "nu", "--role", "owner", "--org", "\udcff", "--key-out", "{out}"],
        "admin",
        "--org is not valid UTF-8 text",
    ),
    "non_utf8_org_update": (
        ["principal", "update", "water", "--org", "\udcff"],
        "admin",
        "--org is not valid UTF-8 text",
    ),
    "non_utf8_name": (["principal", "revoke", "\udcff"], "admin", "NAME is not valid UTF-8"),
    "non_utf8_record": (["audit", "log", "--record", "\udcff"], "auditor", "--record is not"),
    "non_utf8_days": (["office", "due", "--within", "\udcff"], "office", "not valid UTF-8 text"),
    # A tester's finding: quoted as Python's '\udcff', not as the byte the user gave.
    "non_utf8_state": (["search", "--state", "\udcff"], "office", "--state '\\xff' is not a"),
    "zero_width_reason": (
        ["deficient", "{tn}", "--reason", "\u200b\u200b"],
        "office",
        "--reason must not be empty",
    ),
    # `withdraw --reason` is optional, so the core refuses it (the same in both modes).
    "bidi_withdraw_reason": (
        ["withdraw", "{tn}", "--reason", "changed\u2066our mind"],
        "owner",
        "the request's reason holds an invisible or bidirectional character (U+2066)",
    ),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_a_purpose_or_reason_that_reads_other_than_stored_is_refused(
    both: tuple[Cli, str], case: str
) -> None:
    """A tester's finding: a purpose of one zero-width space passed for stated, and the
    release went out with "Purpose: (none given)" on its cover sheet."""
    cli, tracking = both
    args, who, said = UNREADABLE[case]
    out = str(cli.root / f"out-{case}")
    argv = [a.format(tn=tracking, out=out) if "{" in a else a for a in args]
    before = cli.ok("audit", "verify", "--structure-only", who="auditor").json()["size"]
    assert said in _one_line_error(cli.run(*argv, who=who))
    assert not Path(out).exists()
    assert cli.ok("audit", "verify", "--structure-only", who="auditor").json()["size"] == before


def test_a_long_value_quoted_in_an_error_is_cut_in_its_middle(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    key = str(cli.root / "long.key")
    result = cli.run(
        "principal", "add", "x" * 5000, "--role", "analyst", "--key-out", key, who="admin"
    )
    line = _one_line_error(result)
    assert len(line) < 1100 and "characters ...]" in line
    assert line.startswith("pcii: error: ") and line.rstrip().endswith(result.err.strip()[-40:])


# ----- 2, 3. identity and submission files: nested, never ending ----------------------------


def test_an_identity_file_nested_deeply_is_malformed_not_a_crash(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    key = cli.root / "nested.key"
    key.write_text("[" * 30_000 + "]" * 30_000)  # within the size limit, far too deep
    key.chmod(0o600)
    line = _one_line_error(cli.run("--as", str(key), "status", tracking))
    assert "malformed" in line


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "verify", "--trusted-checkpoint"),
        ("audit", "report", "--trusted-checkpoint"),
        ("audit", "verify", "--key"),
        ("receipt", "verify", "{receipt}", "--key"),
    ],
)
def test_a_checkpoint_or_key_file_nested_deeply_is_refused_not_a_crash(
    vault: tuple[Cli, str], args: tuple[str, ...]
) -> None:
    """A "receipt" or "checkpoint" handed to an auditor, nested 30,000 deep (was exit 1)."""
    cli, _tracking = vault
    nested = cli.root / "nested.json"
    nested.write_text('{"a":' + "[" * 30_000 + "]" * 30_000 + "}")
    receipt = cli.root / "nested-receipt.json"
    receipt.write_text('{"format": "pcii-receipt/1"}')
    filled = [a.format(receipt=receipt) for a in args]
    line = _one_line_error(cli.run(*filled, str(nested), who="auditor"))
    assert "nested.json" in line or "--key" in line


def _piped(cli: Cli, producer: str, *args: str) -> Result:
    """`producer | pcii ARGS` in a shell: the CLI reads a pipe that has no size."""
    command = " ".join([producer, "|", sys.executable, "-m", "pcii_vault", *args])
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        env=cli.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_an_identity_read_from_a_pipe_is_bounded(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    result = _piped(cli, "head -c 1000000 /dev/zero", "--as", "/dev/stdin", "status", tracking)
    assert "larger than" in _one_line_error(result)


def test_an_endless_identity_stream_is_refused(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    result = _piped(cli, "cat /dev/zero", "--as", "/dev/stdin", "status", tracking)
    assert "larger than" in _one_line_error(result)


def test_a_submission_read_from_a_pipe_is_bounded(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    key = str(cli.key("owner"))
    result = _piped(cli, "head -c 5000000 /dev/zero", "--as", key, "submit", "/dev/stdin")
    assert "larger than" in _one_line_error(result)


def test_a_submission_from_dev_zero_is_refused(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    result = cli.run("submit", "/dev/zero", who="owner")
    assert "larger than" in _one_line_error(result)


# ----- 4. output paths that cannot even be looked at -----------------------------------------


def test_an_empty_path_is_refused_not_taken_as_the_current_directory(
    vault: tuple[Cli, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, tracking = vault
    monkeypatch.chdir(tmp_path)
    for args, who in [
        (("get", tracking, "--purpose", "drought planning", "--out", ""), "water"),
        (("audit", "export", "--out="), None),
        (("submission", "template", "--out", " "), None),
        # A tester's finding: an empty FILE or DIR argument was the current directory.
        (("submit", ""), "owner"),
        (("receipt", "verify", ""), None),
        (("audit", "verify-proof", ""), None),
        (("policy", "test", ""), None),
        (("policy", "check", ""), None),
    ]:
        assert "is empty: give a path" in _one_line_error(cli.run(*args, who=who))
    assert list(tmp_path.iterdir()) == []


def test_a_file_output_given_as_a_folder_is_refused(
    vault: tuple[Cli, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: `audit report --html reports/` wrote a file named `reports`."""
    cli, tracking = vault
    monkeypatch.chdir(tmp_path)
    for args in [
        ("audit", "report", "--html", "reports/"),
        ("audit", "checkpoint", "--out=checkpoints/"),
        ("submission", "template", "--out", "t.json", "--attachment-out", "files/"),
    ]:
        assert "names a folder" in _one_line_error(cli.run(*args))
    assert list(tmp_path.iterdir()) == []
    # A release's --out is a folder: the slash is the user's to give (this record is
    # not validated yet, so the policies answer, not the path check).
    out = f"{tmp_path}/releases/"
    get = cli.run("get", tracking, "--purpose", "drought planning", "--out", out, who="water")
    assert get.code == 3 and "names a folder" not in get.out + get.err


def test_a_full_or_closed_stdout_is_one_line_not_a_crash(vault: tuple[Cli, str]) -> None:
    """/dev/full as stdout (exit 2); a --json error with stdout closed (on stderr instead)."""
    cli, _ = vault
    command = [sys.executable, "-m", "pcii_vault"]
    with Path("/dev/full").open("w") as full:
        for args in (["audit", "log"], ["audit", "export"], ["--json", "audit", "verify"]):
            done = subprocess.run(
                [*command, *args],
                check=False,
                env=cli.env,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert done.returncode == 2, (args, done.stderr)
            assert done.stderr.count("\n") == 1 and "No space left" in done.stderr, done.stderr
            if args[0] == "--json":  # a short answer, written once the command returned
                assert "the command itself was done" in done.stderr
    for args in (["--json", "audit", "verify", "--log", "nowhere"], ["audit", "log"]):
        closed = subprocess.run(
            [*command, *args],
            check=False,
            env=cli.env,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.close(1),  # stdout closed, as by `>&-`
        )
        assert closed.returncode == 2, closed.stderr
        assert closed.stderr.startswith("pcii: error:") and closed.stderr.count("\n") == 1


def test_a_key_file_is_bounded_and_the_json_of_audit_key_serves(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    line = _one_line_error(cli.run("audit", "verify", "--key", "/dev/zero"))
    assert "larger than 16 MiB" in line
    fifo = cli.root / "key.fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)  # nobody writes to it: read as empty, not waited on
    for option in ("--key", "--trusted-checkpoint"):
        _one_line_error(cli.run("audit", "verify", option, str(fifo)))
    saved = cli.root / "key.json"
    saved.write_text(cli.ok("audit", "key").out)
    cli.ok("audit", "verify", "--key", str(saved))


def test_audit_times_suggest_a_form_that_parses_and_ranges_run_forwards(
    vault: tuple[Cli, str],
) -> None:
    cli, _ = vault
    line = _one_line_error(cli.run("audit", "log", "--since", "2026-12-01"))
    suggested = line.split("e.g. ")[1].split(" ")[0]
    assert suggested == "2026-12-01T00:00:00Z"
    cli.ok("audit", "log", "--since", suggested)
    unknown = _one_line_error(cli.run("audit", "log", "--record", "PCII-2026-00000000"))
    assert "no record with tracking number" in unknown  # as audit recipients says it
    backwards = ("--since", "2026-12-01T03:00Z", "--until", "2026-12-01T02:00Z")
    for command in ("log", "report"):
        assert "is after --until" in _one_line_error(cli.run("audit", command, *backwards))


def test_an_out_path_with_a_name_too_long_is_exit_2(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    out = cli.root / ("n" * 300) / "x"
    line = _one_line_error(
        cli.run("get", tracking, "--purpose", "p", "--out", str(out), who="water")
    )
    assert "--out" in line


def test_a_key_out_with_a_name_too_long_is_exit_2(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    out = cli.root / ("n" * 300) / "z.key"
    result = cli.run(
        "principal", "add", "zed", "--role", "owner", "--org", "Z", "--level", "private",
        "--key-out", str(out), who="admin",
    )  # fmt: skip
    assert "--key-out" in _one_line_error(result)


@pytest.mark.skipif(os.geteuid() == 0, reason="root searches any directory")
def test_an_out_path_under_a_directory_not_searchable_is_exit_2(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    closed = cli.root / "noexec"
    closed.mkdir(exist_ok=True)
    closed.chmod(0o600)
    try:
        got = cli.run("get", tracking, "--purpose", "p", "--out", str(closed / "x"), who="water")
        assert str(closed / "x") in _one_line_error(got)
        added = cli.run(
            "principal", "add", "zed", "--role", "owner", "--org", "Z", "--level", "private",
            "--key-out", str(closed / "z.key"), who="admin",
        )  # fmt: skip
        assert "Permission denied" in _one_line_error(added)
    finally:
        closed.chmod(0o700)


def test_an_out_path_that_is_a_dangling_symlink_is_named_as_such(vault: tuple[Cli, str]) -> None:
    """A tester's finding: it said "cannot create rel: File exists"."""
    cli, tracking = vault
    link = cli.root / "dangling-out"
    link.symlink_to(cli.root / "nowhere")
    got = cli.run("get", tracking, "--purpose", "p", "--out", str(link), who="water")
    assert "is a symlink to nothing" in _one_line_error(got)
    assert not (cli.root / "nowhere").exists()


# ----- 5. audit output files: never over anything, never partial -----------------------------


def _taken(root: Path, kind: str) -> Path:
    """An output path that is already taken, one way or another."""
    path = root / f"taken-{kind}"
    if path.exists() or path.is_symlink():
        return path
    if kind == "file":
        path.write_text("keep me\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(root / "nowhere" / "target")
    elif kind == "symlink":
        target = root / "symlink-target"
        target.write_text("keep me\n")
        path.symlink_to(target)
    return path


AUDIT_OUTPUTS = {
    "checkpoint": ["audit", "checkpoint", "--out"],
    "export": ["audit", "export", "--out"],
    "export_csv": ["audit", "export", "--format", "csv", "--out"],
    "prove": ["audit", "prove", "--index", "0", "--out"],
    "report_html": ["audit", "report", "--html"],
    "report_csv": ["audit", "report", "--csv"],
}


@pytest.mark.parametrize("kind", ["file", "directory", "dangling", "symlink"])
@pytest.mark.parametrize("command", sorted(AUDIT_OUTPUTS))
def test_an_audit_output_never_replaces_what_is_there(
    vault: tuple[Cli, str], command: str, kind: str
) -> None:
    cli, _ = vault
    path = _taken(cli.root, kind)
    before = sorted(p.name for p in cli.root.iterdir())
    line = _one_line_error(cli.run(*AUDIT_OUTPUTS[command], str(path)))
    assert "already exists" in line
    if kind in {"file", "symlink"}:
        assert path.read_text() == "keep me\n"
    assert not (cli.root / "nowhere").exists()
    assert sorted(p.name for p in cli.root.iterdir()) == before


# `--csv DIR` makes its parent directories: a missing one is no fault there.
@pytest.mark.parametrize("command", sorted(set(AUDIT_OUTPUTS) - {"report_csv"}))
def test_an_audit_output_in_a_missing_directory_is_exit_2(
    vault: tuple[Cli, str], command: str
) -> None:
    cli, _ = vault
    target = cli.root / "missing" / "out"
    assert str(target) in _one_line_error(cli.run(*AUDIT_OUTPUTS[command], str(target)))
    assert not (cli.root / "missing").exists()


def test_dev_full_as_an_audit_output_is_refused(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    for command in ("checkpoint", "export", "prove", "report_html"):
        assert "already exists" in _one_line_error(cli.run(*AUDIT_OUTPUTS[command], "/dev/full"))


@pytest.mark.parametrize("command", sorted(AUDIT_OUTPUTS))
def test_an_audit_output_is_written_whole_with_nothing_beside_it(
    vault: tuple[Cli, str], command: str
) -> None:
    cli, _ = vault
    folder = cli.root / f"fresh-{command}"
    folder.mkdir()
    target = folder / "out"
    cli.ok(*AUDIT_OUTPUTS[command], str(target))
    assert [p.name for p in folder.iterdir()] == ["out"]
    if target.is_dir():
        assert sorted(p.suffix for p in target.iterdir()) == [".csv"] * len(list(target.iterdir()))
    else:
        assert target.stat().st_size > 0


def _in_process(args: list[str], cli: Cli, monkeypatch: pytest.MonkeyPatch) -> int:
    """`pcii ARGS` in this process (so a test can make the disk fill); its exit code."""
    from pcii_vault.cli.app import main

    for name in [n for n in os.environ if n.startswith("PCII_")]:
        monkeypatch.delenv(name)
    for name, value in cli.env.items():
        if name.startswith("PCII_"):
            monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(args)
    return int(exited.value.code or 0)


def _disk_full(path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("x" * 48_000)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_leaves_no_partial_report_page(
    vault: tuple[Cli, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pcii_vault.report

    cli, _ = vault
    folder = cli.root / "full-html"
    folder.mkdir()
    monkeypatch.setattr(pcii_vault.report, "write_html", lambda _r, page, **_: _disk_full(page))
    code = _in_process(["audit", "report", "--html", str(folder / "r.html")], cli, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("pcii: error: cannot write --html") and "No space left" in err
    assert list(folder.iterdir()) == []


def test_a_full_disk_leaves_no_partial_export(
    vault: tuple[Cli, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pcii_vault.cli.audit

    cli, _ = vault
    folder = cli.root / "full-export"
    folder.mkdir()

    def fill(_events: object, _fmt: str, handle: object) -> None:
        handle.write("{}\n" * 1000)  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pcii_vault.cli.audit, "_export", fill)
    code = _in_process(["audit", "export", "--out", str(folder / "e.jsonl")], cli, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "No space left" in err
    assert list(folder.iterdir()) == []


# ----- 6-11. options, environment, URLs, indices, states, --json -----------------------------


@pytest.mark.parametrize("days", ["999999999", "99999999999999999999", "-1"])
def test_office_due_within_is_bounded(vault: tuple[Cli, str], days: str) -> None:
    cli, _ = vault
    assert "--within" in _one_line_error(cli.run("office", "due", "--within", days, who="office"))


def test_office_due_within_a_century_works(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    cli.ok("office", "due", "--within", "36500", who="office")


@pytest.mark.parametrize("tracking", ["PCII-2026-\udcff", "PCII-2026-\x1b[31m"])
def test_audit_recipients_of_an_unreadable_tracking_number_is_exit_2(
    both: tuple[Cli, str], tracking: str
) -> None:
    """A tester's finding: bytes the command line could not decode were exit 1."""
    cli, _ = both
    line = _one_line_error(cli.run("audit", "recipients", tracking, who="auditor"))
    assert "tracking number" in line
    assert "\x1b" not in line


def test_an_escape_in_a_quoted_value_is_shown_once_escaped(vault: tuple[Cli, str]) -> None:
    """A tester's finding: the message quoted the escaped text with repr, which escaped
    its backslash again ('\\u001b[31m')."""
    cli, _ = vault
    line = _one_line_error(cli.run("audit", "verify", "--key", "\x1b[31m", who="auditor"))
    assert "--key '\\u001b[31m' is neither a verifier key" in line
    assert "\x1b" not in line


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("serve", "--listen", "[::1"), "--listen '[::1': use HOST:PORT"),
        (("serve", "--listen", "::1]:8443"), "use HOST:PORT"),
        (("audit", "verify", "--log", "ftp://host/x"), "--log ftp://host/x: give a copy"),
    ],
)
def test_a_half_bracketed_address_or_another_scheme_is_named_as_given(
    vault: tuple[Cli, str], args: tuple[str, ...], said: str
) -> None:
    """A tester's finding: "':' is not a host name", and "ftp:/host/x holds no log/"."""
    cli, _ = vault
    assert said in _one_line_error(cli.run(*args))


def test_an_unseal_secret_not_utf8_is_exit_2(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    result = cli.run("status", tracking, who="owner", env={"PCII_UNSEAL_SECRET": "\udcff"})
    assert "PCII_UNSEAL_SECRET is not valid UTF-8" in _one_line_error(result)


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1",
        "https://",
        "https://:99999",
        "https://:8443",
        "https://h:0",
        "https://127.0.0.1:8443/foo",  # was accepted, then "no such route"
    ],
)
def test_a_malformed_vault_url_is_a_configuration_error(vault: tuple[Cli, str], url: str) -> None:
    cli, tracking = vault
    result = cli.run("status", tracking, who="owner", env={"PCII_VAULT": url})
    assert url in _one_line_error(result)


def test_the_transport_checks_its_url_too() -> None:
    from pcii_vault.service.transport import HttpTransport

    for url in ("https://h:0", "https://", "http://h:1", "https://[::1"):
        with pytest.raises(ConfigError, match="vault URL"):
            HttpTransport(url, ca=None, identity=None)


def test_a_server_that_cannot_be_reached_was_handed_nothing() -> None:
    """A tester's finding: a server stopped between a submission's uploads and its submit
    refused the connection, and the owner was told the vault might record it all the same.
    No connection: nothing was sent (the client then adds no such note)."""
    import socket

    from pcii_vault.service.transport import HttpTransport

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = HttpTransport(f"https://127.0.0.1:{port}", ca=None, identity=None)
    with pytest.raises(BackendError, match="cannot reach the vault server") as raised:
        transport.info()
    assert raised.value.handed_to_log is False


def test_proving_an_index_beyond_the_log_is_bad_input(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    line = _one_line_error(cli.run("audit", "prove", "--index", "99999999"))
    assert "beyond the log" in line


def test_proving_an_index_beyond_a_served_log_is_bad_input(served: ServerCli) -> None:
    line = _one_line_error(_over_the_wire(served, "audit", "prove", "--index", "99999999"))
    assert "beyond the log" in line


def test_a_proof_from_a_server_verifies_with_the_servers_key(
    served: ServerCli, tmp_path: Path
) -> None:
    proof = tmp_path / "proof.json"
    assert _over_the_wire(served, "audit", "prove", "--index", "1", "--out", str(proof)).code == 0
    checked = _over_the_wire(served, "audit", "verify-proof", str(proof))
    assert checked.code == 0 and "proof verified" in checked.out, checked.err


def _over_the_wire(cli: ServerCli, *args: str) -> Result:
    """`pcii --as auditor.key ARGS` with PCII_VAULT the server's URL (no unseal secret)."""
    server = cli.start()
    remote = {"PCII_VAULT": server.url, "PCII_CA": str(server.ca)}
    remote_env = {k: v for k, v in cli.env.items() if k != "PCII_UNSEAL_SECRET"} | remote
    done = subprocess.run(
        [sys.executable, "-m", "pcii_vault", "--as", str(cli.key("auditor")), *args],
        env=remote_env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return Result(done.returncode, done.stdout, done.stderr)


def test_search_refuses_an_unknown_state(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    result = cli.run("search", "--purpose", "x", "--state", "bogus", who="water")
    line = _one_line_error(result)
    assert "validated" in line and "received" in line
    cli.ok("search", "--purpose", "x", "--state", "validated", who="water")


def test_a_group_alone_with_json_is_a_json_usage_error(vault: tuple[Cli, str]) -> None:
    cli, _ = vault
    result = cli.run("--json", "principal")
    assert result.code == 2
    assert json.loads(result.out) == {
        "error": "Missing command (see 'pcii principal --help')",
        "exit_code": 2,
    }
    # A tester's finding: the same mistake was exit 0 without --json.
    helped = cli.run("principal")
    assert helped.code == 2 and "Usage: pcii principal" in helped.out


# ----- 12. SIGTERM in the middle of an upload ---------------------------------------------


def _stored_files(objects: Path) -> list[Path]:
    records = objects / "records"
    return sorted(p for p in records.rglob("*") if p.is_file()) if records.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_during_an_upload_cleans_up_like_ctrl_c(tmp_path: Path, signum: int) -> None:
    """Stopped mid-upload: one error line, exit 128 + the signal, no object of it left."""
    cli = Cli(tmp_path)
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    objects = cli.vault / "objects"
    already = _stored_files(objects)
    big = tmp_path / "riverbend-scada-assessment.pdf"
    with big.open("wb") as handle:
        handle.truncate(400 << 20)  # sparse: quick to make, slow enough to encrypt
    document = cli.write_submission()
    process = subprocess.Popen(
        [sys.executable, "-m", "pcii_vault", "--as", str(cli.key("owner")), "submit",
         str(document), "--attach", str(big)],
        env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # Wait until the attachment's object is being written (its temporary file grows).
        while time.monotonic() < deadline and process.poll() is None:
            if any(p.stat().st_size > (8 << 20) for p in _temp_files(objects)):
                break
            time.sleep(0.02)
        assert process.poll() is None, process.communicate()
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, (process.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcii: error:"), err
    assert ("terminated" if signum == signal.SIGTERM else "interrupted") in lines[0]
    assert out == ""
    assert _stored_files(objects) == already


def _temp_files(objects: Path) -> list[Path]:
    records = objects / "records"
    if not records.exists():
        return []
    found = []
    for path in records.rglob("*"):
        try:
            if path.is_file():
                found.append(path)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("args", [("audit", "log"), ("--json", "audit", "log")])
def test_a_reader_that_closes_the_pipe_ends_the_command_as_sigpipe_would(
    populated: Cli, args: tuple[str, ...]
) -> None:
    # `pcii audit log | head -1`: the reader goes away before the output is written.
    cli = populated
    process = subprocess.Popen(
        [sys.executable, "-m", "pcii_vault", *args],
        env=cli.environment(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE, err
    assert err == b""  # no message, no traceback: the pipeline's reader chose to stop


def test_an_unseal_share_far_longer_than_a_share_is_refused_before_it_is_sent(
    vault: tuple[Cli, str], tmp_path: Path
) -> None:
    """Checked before any connection (none is listening here); its words never echoed."""
    cli, _ = vault
    long = tmp_path / "long.txt"
    long.write_text(" ".join(["academic", "acid"] * 300))
    long.chmod(0o600)  # as a share file is kept
    result = cli.run(
        "unseal", "--share", str(long), who="admin", env={"PCII_VAULT": "https://127.0.0.1:9"}
    )
    line = _one_line_error(result)
    assert "is 4199 characters, not one share (a share is 33 words)" in line
    assert "academic" not in line


@pytest.mark.parametrize("secret", ["not the secret", None])
def test_unseal_on_a_vault_directory_says_it_is_for_a_server_first(
    vault: tuple[Cli, str], tmp_path: Path, secret: str | None
) -> None:
    """A tester's finding: with a wrong secret, or none, `pcii unseal` on a vault directory
    asked for the secret or shares; given them, it said it is for a server only."""
    cli, _ = vault
    share = tmp_path / "share.txt"
    share.write_text(" ".join(["academic"] * 33))
    share.chmod(0o600)
    env = {"PCII_UNSEAL_SECRET": secret} if secret else {"PCII_UNSEAL_SECRET": ""}
    line = _one_line_error(cli.run("unseal", "--share", str(share), who="admin", env=env))
    assert line.startswith("pcii: error: `pcii unseal` is for a sealed `pcii serve`"), line
    assert "embedded commands unseal for themselves" in line


def test_a_copied_log_is_verified_without_key_in_both_modes(both: tuple[Cli, str]) -> None:
    """`audit verify --log DIR` takes the vault's key when no `--key` is given: its
    directory's, or its server's (was exit 2, "no log key", against a server)."""
    cli, _tracking = both
    copy = cli.root / "log-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(cli.vault / "objects" / "log", copy / "log")
    shutil.copytree(cli.vault / "objects" / "policysets", copy / "policysets")
    env = {}
    if isinstance(cli, ServerCli):  # the harness runs audit commands on the vault itself
        server = cli.start()
        env = {"PCII_VAULT": server.url, "PCII_CA": str(server.ca)}
    verified = cli.run("--json", "audit", "verify", "--log", str(copy), who="auditor", env=env)
    assert verified.code == 0, verified.err
    assert verified.json()["sound"] is True


@pytest.mark.parametrize(
    ("principal", "code", "words"),
    [
        ("office", 4, "request signature of 'office' does not verify"),
        ("nobody", 3, "'nobody' is not a registered principal"),
    ],
)
def test_an_identity_file_naming_another_principal_reads_alike_in_both_modes(
    both: tuple[Cli, str], principal: str, code: int, words: str
) -> None:
    """The owner's key under another name: embedded mode's words over the wire too (the
    server said "signature refused: ..." and added "(unknown key id)")."""
    cli, tracking = both
    document = json.loads(cli.key("owner").read_text())
    document["principal"] = principal
    forged = cli.root / f"as-{principal}.key"
    forged.write_text(json.dumps(document))
    forged.chmod(0o600)
    line = _one_line_error(cli.run("--as", str(forged), "status", tracking), code)
    assert line == f"pcii: error: {words}", line


@pytest.mark.parametrize("principal", ["rmw\u00e9", "", "own\ner", "own\x7fer"])
def test_an_identity_file_naming_no_possible_principal_is_malformed_in_both_modes(
    both: tuple[Cli, str], principal: str
) -> None:
    """A tester's finding: a principal name the wire's key id cannot carry was exit 1
    ("String contains disallowed characters") through a server."""
    cli, tracking = both
    document = json.loads(cli.key("owner").read_text())
    document["principal"] = principal
    forged = cli.root / "odd-principal.key"
    forged.write_text(json.dumps(document))
    forged.chmod(0o600)
    line = _one_line_error(cli.run("--as", str(forged), "status", tracking), 2)
    assert "is malformed" in line and "is no principal name" in line, line


def test_a_file_name_too_long_is_one_line_exit_2(vault: tuple[Cli, str]) -> None:
    """A tester's finding: ENAMETOOLONG was exit 1 in four commands."""
    cli, _ = vault
    long = str(cli.root / ("a" * 300))
    for args in (
        ["policy", "check", long],
        ["audit", "verify", "--log", long],
        ["--vault", long, "init", "--insecure-fast-kdf", "--admin-key-out", long + ".key"],
    ):
        line = _one_line_error(cli.run(*args))
        assert "too long" in line, (args, line)
    submission = str(cli.write_submission("long.json", attachments=[]))
    line = _one_line_error(cli.run("submit", submission, "--attach", long, who="owner"))
    assert "too long" in line


def test_an_empty_key_is_named_empty_not_a_directory(vault: tuple[Cli, str]) -> None:
    """A tester's finding: `--key ""` said "key file . is a directory"."""
    cli, _ = vault
    line = _one_line_error(cli.run("audit", "verify", "--key", ""))
    assert "--key is empty" in line


def test_an_unseal_prompt_ended_with_ctrl_d_is_exit_2(vault: tuple[Cli, str]) -> None:
    """A tester's finding: end of input at the secret's prompt was "interrupted", exit 1."""
    import pty

    cli, _ = vault
    env = {k: v for k, v in cli.env.items() if k != "PCII_UNSEAL_SECRET"}
    argv = [sys.executable, "-m", "pcii_vault", "--as", str(cli.key("admin")), "principal", "list"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: pcii on a terminal of its own
        os.execve(sys.executable, argv, env)  # noqa: S606 -- our own interpreter, no shell
    said = b""
    deadline = time.monotonic() + 60
    while b"Unseal secret" not in said and time.monotonic() < deadline:
        said += os.read(fd, 1024)
    os.write(fd, b"\x04")  # Ctrl-D
    with contextlib.suppress(OSError):  # the terminal closes as the child exits
        while chunk := os.read(fd, 1024):
            said += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 2, said
    assert b"end of input at a prompt" in said


def test_a_template_refused_for_one_output_writes_neither(tmp_path: Path) -> None:
    """A tester's finding: with --out taken, the --attachment-out file was written all
    the same; and the printed command named an attachment the example did not describe."""
    cli = Cli(tmp_path)
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    line = _one_line_error(
        cli.run("submission", "template", "--out", str(taken), "--attachment-out",
                str(tmp_path / "new.pdf"))
    )  # fmt: skip
    assert "taken.json already exists" in line and not (tmp_path / "new.pdf").exists()
    same = tmp_path / "same"
    line = _one_line_error(
        cli.run("submission", "template", "--out", str(same), "--attachment-out",
                str(tmp_path / "." / "same"))
    )  # fmt: skip
    assert "name the same file" in line and not same.exists()
    done = cli.run(
        "submission", "template", "--out", str(tmp_path / "a.json"), "--attachment-out",
        str(tmp_path / "scada.pdf"),
    )  # fmt: skip
    assert done.code == 0, done.err
    described = json.loads((tmp_path / "a.json").read_text())["attachments"]
    assert [a["name"] for a in described] == ["scada.pdf"]
    assert f"--attach {tmp_path / 'scada.pdf'}" in done.err


def test_a_server_url_given_as_log_says_where_a_servers_log_is_read(
    vault: tuple[Cli, str],
) -> None:
    """It was taken for a directory, echoed as "https:/..." (a path collapses the //)."""
    cli, _ = vault
    line = _one_line_error(cli.run("audit", "verify", "--log", "https://127.0.0.1:9/v"))
    assert "--log https://127.0.0.1:9/v:" in line and "--vault https://" in line


_INTERRUPTED_AS_LOGGED = """
import os, signal
from pcii_vault import client
from pcii_vault.cli import app
receive = client.LocalTransport.receive
def interrupted(self, request, sealed):
    receive(self, request, sealed)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the vault logs the submission
client.LocalTransport.receive = interrupted
app.main()
"""


@pytest.mark.parametrize("json_mode", [False, True])
def test_an_interrupted_submit_once_handed_to_the_vault_names_its_tracking_number(
    tmp_path: Path, json_mode: bool
) -> None:
    """Ctrl-C while the vault logs the submission: exit 130, and the owner is told the
    tracking number to check, instead of submitting it again."""
    cli = Cli(tmp_path)
    cli.init()
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    document = cli.write_submission()
    args = [*(["--json"] if json_mode else []), "--as", str(cli.key("owner")), "submit",
            str(document), "--attach", str(cli.attachment())]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_AS_LOGGED, *args],
        env=cli.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr
    if json_mode:
        error = json.loads(done.stdout)
        message, code = error["error"], error["exit_code"]
        assert code == 130
    else:
        [message] = done.stderr.strip().splitlines()
        assert message.startswith("pcii: error: interrupted (after handing PCII-")
    tracking = message.split("handing ")[1].split(" ")[0]
    assert f"pcii status {tracking}" in message
    status = json.loads(cli.ok("--json", "status", tracking, who="owner").out)
    assert status["state"] == "received"

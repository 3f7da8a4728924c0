"""The server's spool under the vault directory: nothing followed out of it.

A tester linked `<vault>/spool` to a directory of its own: the server made it 0700 and
removed its numbered sub-directories, as spools of dead servers. A file there crashed
the server (exit 1).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pcii_vault.errors import IntegrityError
from pcii_vault.service.app import _held_open, private_spool

_DEAD = "999999999"  # above any pid_max: no such process


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    (victim / _DEAD / "data").mkdir(parents=True)
    (victim / _DEAD / "data" / "f").write_text("important")
    victim.chmod(0o755)
    return victim


def test_a_symlink_at_the_spool_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    spool = tmp_path / "vault" / "spool"
    spool.parent.mkdir()
    spool.symlink_to(victim)
    with pytest.raises(IntegrityError, match="not the spool directory"):
        private_spool(spool)
    assert (victim / _DEAD / "data" / "f").read_text() == "important"
    assert victim.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in victim.iterdir()] == [_DEAD]


def test_a_file_at_the_spool_is_refused(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.write_text("x")
    with pytest.raises(IntegrityError, match="remove it"):
        private_spool(spool)
    assert spool.read_text() == "x"


def test_entries_planted_in_the_spool_are_removed_not_followed(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / _DEAD).symlink_to(victim)  # a dead server's spool, as a link elsewhere
    (spool / str(os.getpid())).symlink_to(victim)  # this server's, planted before it
    mine = private_spool(spool)
    assert mine == spool / str(os.getpid())
    assert mine.is_dir() and not mine.is_symlink()
    assert sorted(p.name for p in spool.iterdir()) == [str(os.getpid())]
    assert (victim / _DEAD / "data" / "f").read_text() == "important"


def test_a_dead_servers_spool_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / _DEAD / "x").mkdir(parents=True)
    (spool / "1").mkdir()  # init: alive
    private_spool(spool)
    assert sorted(p.name for p in spool.iterdir()) == sorted(["1", str(os.getpid())])
    assert spool.stat().st_mode & 0o777 == 0o700


def test_a_spool_replaced_under_a_running_server_is_never_written_through(
    tmp_path: Path,
) -> None:
    """A tester swapped `<vault>/spool` for a symlink while the server ran: the releases'
    plaintext was staged in the link's target. The server stages in the directory it made."""
    spool = private_spool(tmp_path / "vault" / "spool")
    staging_root = _held_open(spool)
    outside = tmp_path / "outside"
    outside.mkdir()
    moved = tmp_path / "vault" / "spool-moved"
    spool.parent.rename(moved)  # the whole spool, and a link in its place
    (tmp_path / "vault" / "spool").mkdir()
    spool.symlink_to(outside)
    staged = Path(tempfile.mkdtemp(prefix=".T.", dir=staging_root))
    (staged / "document.md").write_text("plaintext")
    assert list(outside.iterdir()) == []
    assert (moved / spool.name / staged.name / "document.md").read_text() == "plaintext"


def test_a_spool_removed_under_a_running_server_fails_the_release(tmp_path: Path) -> None:
    spool = private_spool(tmp_path / "spool")
    staging_root = _held_open(spool)
    shutil.rmtree(tmp_path / "spool")
    with pytest.raises(FileNotFoundError):
        tempfile.mkdtemp(dir=staging_root)


def test_a_symlink_where_the_spool_is_held_open_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "spool").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(IntegrityError, match="not the spool directory"):
        _held_open(tmp_path / "spool")

"""FilesystemStore: the embedded default ObjectStore, objects as files under one root.

Invariants:
- every key passes `validate_key` and its resolved path stays under the root, so no key
  (nor a symlink planted inside the root) can name a file outside it; a planted symlink
  that leads out, or loops, is tampering (`IntegrityError`), as is a directory at the
  store's lock file;
- a reader never sees a half-written object: bytes go to a temporary file in the target
  directory, are fsynced, then hard-linked to the final name; `link()` fails when the
  name exists, which gives put_if_absent exactly one winner among concurrent creators
  (O_EXCL semantics), and the directory is fsynced so the new name survives a crash;
- objects are never modified in place: a replacement (put_if_match) is a new file
  renamed over the old name while holding an exclusive `flock` on the store's lock
  file, after comparing the current etag, so compare-and-swap cannot lose an update;
- the etag is the SHA-256 hex digest of the object's bytes;
- temporary files and the lock file start with a dot, which no valid key segment does,
  so they never collide with objects and `list` skips them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pcii_vault.errors import (
    BackendError,
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PreconditionFailedError,
)
from pcii_vault.store.base import (
    MAX_WHOLE_OBJECT_BYTES,
    ObjectInfo,
    listed_key,
    too_large_to_read_whole,
    validate_key,
)

__all__ = ["FilesystemStore"]

_LOCK_NAME = ".pcii-store.lock"
# A compare-and-swap holds the store's lock for milliseconds: one held this long belongs to
# a stopped (Ctrl-Z) or hung process, which would otherwise stall every writer for good.
_LOCK_WAIT_S = 30.0
_TMP_PREFIX = ".tmp-"
_READ_SIZE = 1 << 20
_ETAG_CACHE_MAX = 4096

# A stat signature identifies one immutable file version: objects are only ever created
# by link() or rename() of a fresh inode, never rewritten in place.
_StatSig = tuple[int, int, int, int, int]


def _flock_within(fd: int, path: Path, seconds: float) -> None:
    """Take an exclusive flock on `fd`, waiting at most `seconds`.

    Raises:
        BackendError: another process held it all that time.
    """
    deadline = time.monotonic() + seconds
    pause = 0.0002  # short: writers of one vault wait on it in turn, often
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"{path} has been held by another process for {seconds:.0f} s (a "
                    "stopped or hung pcii process?): nothing was written; try again"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.002)
        else:
            return


def _refuse_planted_root(root: Path, *, create: bool) -> None:
    """Refuse a symlink planted at the store's root, rather than fail to create it.

    A loop always; a dangling symlink where the store is created (a new vault, or the
    store inside the vault directory): not "cannot create" (exit 5). A dangling one at
    an existing vault's `file:///` store reads as not mounted.

    Raises:
        IntegrityError: a loop, or a dangling symlink where the store is created.
    """
    try:
        root.stat()
    except FileNotFoundError:
        if create and root.is_symlink():
            raise IntegrityError(
                f"store directory {root} is a dangling symlink planted in its place"
            ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IntegrityError(
                f"store directory {root} is a symlink loop planted in its place"
            ) from None


class FilesystemStore:
    """An ObjectStore over a local directory.

    Args:
        root: the directory holding the objects.
        create: create `root` if missing (a new vault); else a missing root is refused,
            so a moved or unmounted store is never replaced by an empty one.

    Raises:
        BackendError: `root` cannot be created, or is missing and `create` is false.
    """

    def __init__(self, root: Path, *, create: bool = True) -> None:
        _refuse_planted_root(root, create=create)
        if not create and not root.is_dir():
            raise BackendError(
                f"store directory {root} does not exist or is no directory (moved, or not mounted?)"
            )
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:
            # Something else than a directory stands there (a file, /dev/zero): the
            # user's path is wrong, no store is failing.
            raise InputError(f"the store path {root} exists and is not a directory") from None
        except OSError as exc:
            raise BackendError(f"cannot create store directory {root}: {exc.strerror}") from exc
        self._root = root.resolve()
        self._root_text = str(self._root)
        self._root_prefix = os.path.join(self._root_text, "")  # noqa: PTH118 -- see _path
        self._etag_cache: dict[_StatSig, str] = {}

    @property
    def root(self) -> Path:
        """The resolved directory holding the objects."""
        return self._root

    @property
    def url(self) -> str:
        """The store location as a ``file://`` URL."""
        return self._root.as_uri()

    # -- paths -----------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        """Map a validated key to its path, refusing anything outside the root."""
        validate_key(key)
        # Safe segments (validated), so the key joins the root as it is; strings, not
        # Path objects, on this path that every store call takes.
        text = os.path.join(self._root_text, key)  # noqa: PTH118
        # Resolve symlinks planted inside the root: the real path must stay under it.
        real = _resolved(text)
        if real != self._root_text and not real.startswith(self._root_prefix):
            # Keys are validated: only a symlink planted in the store leads out of it.
            raise IntegrityError(
                f"object {key} resolves outside the store root {self._root}: a symlink "
                "planted in the store"
            )
        if real != text:
            self._refuse_linked_folder(os.path.dirname(text), key)  # noqa: PTH120
        return Path(text)

    def remove_folder_marker(self, key: str) -> bool:
        """Remove a symlink planted at `key` (the link, never what it leads to).

        Raises:
            InputError: the key is unsafe.
            IntegrityError: a folder on the key's path is a symlink.
        """
        validate_key(key)
        text = os.path.join(self._root_text, key)  # noqa: PTH118
        self._refuse_linked_folder(os.path.dirname(text), key)  # noqa: PTH120
        try:
            linked = stat.S_ISLNK(os.lstat(text).st_mode)
        except OSError:
            return False  # nothing there (or not even its folder)
        if not linked:
            return False
        try:
            with _os_errors(self._root, "delete", key):
                os.unlink(text)  # noqa: PTH108
        except NotFoundError:
            return False  # removed meanwhile
        with contextlib.suppress(OSError):
            _fsync_dir(Path(text).parent)
        return True

    def _refuse_linked_folder(self, folder: str, key: str) -> None:
        """Refuse a key whose folder is reached through a symlink (none is the vault's).

        Followed, a link at a folder aliases every object under its target: a listing
        of the folder, and deleting what it lists (junk removed from under a log key),
        would reach the target's objects, every data key among them.

        Raises:
            IntegrityError: a folder on the key's path is a symlink.
        """
        if _resolved(folder) != folder:
            raise IntegrityError(
                f"object {key}: a folder on its path is a symlink planted in the store (the "
                "vault makes none); remove it"
            )

    def _ensure_parent(self, path: Path) -> list[Path]:
        """Create the missing directories above `path`, fsyncing each new entry's parent.

        Returns:
            The directories this call created, outermost first.
        """
        missing: list[Path] = []
        parent = path.parent
        while not parent.is_dir():
            missing.append(parent)
            parent = parent.parent
        created: list[Path] = []
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=0o700)  # whatever the umask: objects are 0600
            except FileExistsError:
                if not directory.is_dir():
                    # The vault's keys never make an object of another's folder: put there.
                    where = directory.relative_to(self._root)
                    raise IntegrityError(
                        f"the store holds a file at {where} where the vault keeps a folder "
                        "(not the vault's: put there); remove it"
                    ) from None
                continue
            _fsync_dir(directory.parent)
            created.append(directory)
        return created

    # -- writes ----------------------------------------------------------------------

    def _write_temp(
        self, directory: Path, chunks: Iterable[bytes], *, tmp: Path | None = None
    ) -> tuple[Path, int, str]:
        """Write `chunks` to a fresh temporary file in `directory`, fsynced.

        Args:
            directory: where the temporary file goes (the object's folder).
            chunks: the bytes.
            tmp: the temporary file's path (a crash leftover there is replaced); default a
                fresh random name in `directory`.

        Returns:
            The temporary path, the size, and the SHA-256 hex digest of the bytes.
        """
        if tmp is None:
            tmp = directory / f"{_TMP_PREFIX}{secrets.token_hex(12)}"
        else:
            tmp.unlink(missing_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                for chunk in chunks:
                    view = memoryview(chunk)
                    digest.update(view)
                    size += len(view)
                    while view:
                        written = out.write(view)
                        view = view[written or 0 :]
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return tmp, size, digest.hexdigest()

    def _create(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Create `key` from `chunks` unless it exists (link-based, exactly one winner)."""
        path = self._path(key)
        with _os_errors(self._root, "write", key):
            if path.exists() and not _removed_empty_directory(path):
                # Fail fast before consuming a possibly large stream; link() still decides.
                raise ObjectExistsError(f"object {key} already exists")
            tmp, size, etag = self._write_in_folder(path, chunks)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ObjectExistsError(f"object {key} already exists") from None
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            _fsync_dir(path.parent)
        return ObjectInfo(key=key, size=size, etag=etag)

    def _write_in_folder(self, path: Path, chunks: Iterable[bytes]) -> tuple[Path, int, str]:
        """`_write_temp` in `path`'s folder, made first (and removed if the write fails).

        A folder this write made and left empty (the stream failed) is removed again.
        A folder removed between its making and the temporary file's creation (an empty
        record folder cleaned by another process) is made again: the temporary file is
        the first thing written, so no byte of `chunks` was taken yet.
        """
        for attempt in range(_FOLDER_ATTEMPTS):
            created = self._ensure_parent(path)
            try:
                return self._write_temp(path.parent, chunks)
            except FileNotFoundError:
                if attempt + 1 < _FOLDER_ATTEMPTS and not path.parent.is_dir():
                    continue
                self._remove_if_empty(created)
                raise
            except BaseException:
                self._remove_if_empty(created)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _remove_if_empty(self, folders: Sequence[Path]) -> None:
        for folder in reversed(folders):
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (another write went in): it and its parents stay
            with contextlib.suppress(OSError):
                _fsync_dir(folder.parent)

    def remove_empty_folder(self, prefix: str) -> None:
        """Remove the folder of `prefix` (a record's ``records/<tracking>/``) if empty.

        Its parents stay. A write into it racing the removal makes it again
        (`_write_in_folder`).
        """
        folder = self._path(prefix.rstrip("/") + "/x").parent
        if folder != self._root:
            _removed_empty_directory(folder)

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        """Create `key` with `data` unless it exists.

        Raises:
            InputError: the key is unsafe.
            ObjectExistsError: the key already exists.
            BackendError: the filesystem refused the write.
        """
        return self._create(key, (data,))

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Create `key` from `chunks` with bounded memory, visible only once complete.

        An exception raised by `chunks` propagates unchanged and leaves nothing behind.

        Raises:
            InputError: the key is unsafe.
            ObjectExistsError: the key already exists.
            BackendError: the filesystem refused the write.
        """
        return self._create(key, chunks)

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        """Replace `key` only if its current etag is `etag` (``None``: only if absent).

        Raises:
            InputError: the key is unsafe.
            PreconditionFailedError: the object changed, is missing, or exists for ``None``.
            BackendError: the filesystem refused the write.
        """
        if etag is None:
            try:
                return self._create(key, (data,))
            except ObjectExistsError:
                raise PreconditionFailedError(f"object {key} already exists") from None
        path = self._path(key)
        with _os_errors(self._root, "write", key), self._locked():
            try:
                current = hashlib.sha256(path.read_bytes()).hexdigest()
            except (FileNotFoundError, NotADirectoryError):
                raise PreconditionFailedError(f"object {key} no longer exists") from None
            if current != etag:
                raise PreconditionFailedError(f"object {key} changed since it was read")
            tmp, size, new_etag = self._write_temp(path.parent, (data,), tmp=_swap_temp(path))
            try:
                tmp.replace(path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fsync_dir(path.parent)
        return ObjectInfo(key=key, size=size, etag=new_etag)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store-wide exclusive lock (serialises compare-and-swap)."""
        lock = self._root / _LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except (IsADirectoryError, NotADirectoryError) as exc:
            raise IntegrityError(f"{lock} is not the store's lock file: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise IntegrityError(f"{lock} is a symlink, not the store's lock file") from None
        try:
            _flock_within(fd, lock, _LOCK_WAIT_S)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """Return the whole object.

        Raises:
            NotFoundError: no such object.
            IntegrityError: larger than any object the vault reads whole.
        """
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """Return the object and its etag, both from the same file version.

        Raises:
            NotFoundError: no such object.
            IntegrityError: larger than any object the vault reads whole (a planted,
                maybe sparse, file): refused before it is read into memory.
        """
        path = self._path(key)
        with _os_errors(self._root, "read", key), _open_object(path, key) as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_WHOLE_OBJECT_BYTES:
                raise too_large_to_read_whole(key, size)
            # Bounded even if the file grows meanwhile (objects are never written in
            # place, but a planted file may be); `read(n)` allocates n bytes at once.
            data = stream.read(size + 1)
        if len(data) > MAX_WHOLE_OBJECT_BYTES:
            raise too_large_to_read_whole(key, len(data))
        return data, hashlib.sha256(data).hexdigest()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to `length` bytes from offset `start` (empty past the end).

        Raises:
            InputError: negative offset or length.
            NotFoundError: no such object.
        """
        if start < 0 or length < 0:
            raise InputError("range offset and length must not be negative")
        path = self._path(key)
        with _os_errors(self._root, "read", key), _open_object(path, key) as stream:
            stream.seek(start)
            return stream.read(length)

    def open_stream(self, key: str, chunk_size: int = _READ_SIZE) -> Iterator[bytes]:
        """Yield the object in chunks of at most `chunk_size` bytes.

        The file is opened before this returns, so a missing object fails here.

        Raises:
            NotFoundError: no such object.
        """
        path = self._path(key)
        with _os_errors(self._root, "read", key):
            stream = _open_object(path, key)
        return self._iter_file(stream, key, chunk_size)

    def _iter_file(self, stream: BinaryIO, key: str, chunk_size: int) -> Iterator[bytes]:
        with stream, _os_errors(self._root, "read", key):
            while chunk := stream.read(chunk_size):
                yield chunk

    def head(self, key: str) -> ObjectInfo:
        """Return size and etag of `key`.

        Raises:
            NotFoundError: no such object.
        """
        path = self._path(key)
        with _os_errors(self._root, "read", key):
            return self._info(key, path)

    def _info(self, key: str, path: Path) -> ObjectInfo:
        """Describe one file, hashing it only when its version is not cached."""
        with _open_object(path, key) as stream:
            st = os.fstat(stream.fileno())
            sig: _StatSig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            etag = self._etag_cache.get(sig)
            if etag is None and st.st_size > MAX_WHOLE_OBJECT_BYTES:
                # Never read whole, so never replaced by a conditional write: no hash of a
                # planted file of any size (a sparse terabyte) is taken just to list it.
                etag = f"unhashed-{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"
            elif etag is None:
                etag = hashlib.file_digest(stream, "sha256").hexdigest()
                if len(self._etag_cache) >= _ETAG_CACHE_MAX:
                    self._etag_cache.clear()
                self._etag_cache[sig] = etag
        modified = datetime.fromtimestamp(st.st_mtime, UTC)
        return ObjectInfo(key=key, size=st.st_size, etag=etag, modified=modified)

    def leftovers(self, before: datetime) -> list[Path]:
        """What writes that never finished left, untouched since before `before`.

        Temporary files (a crash mid-write), and empty record folders (``records/<t>/``
        of an upload whose objects were removed: a refused submission, a shredded
        record). Remove them with `remove_leftover`.
        """
        found: list[Path] = []
        for dirpath, _dirnames, filenames in os.walk(self._root):
            for name in filenames:
                path = Path(dirpath) / name
                if name.startswith(_TMP_PREFIX) and _older(path, before):
                    found.append(path)
        records = self._root / "records"
        if not records.is_symlink():  # planted: it leads out of the store, nothing of ours
            with contextlib.suppress(OSError), os.scandir(records) as entries:
                for entry in entries:
                    folder = records / entry.name
                    if entry.is_dir(follow_symlinks=False) and _empty_tree_older(folder, before):
                        found.append(folder)
        return sorted(found)

    def remove_leftover(self, path: Path) -> None:
        """Remove what `leftovers` found (a folder only while nothing is in it)."""
        if path.is_dir() and not path.is_symlink():
            _removed_empty_directory(path)  # stays if anything went in meanwhile
        else:
            path.unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with `prefix`, in lexicographic key order.

        Raises:
            InputError: the prefix contains characters no key can have.
        """
        if prefix:
            # Any prefix of a valid key is a valid key once a letter is appended.
            validate_key(prefix.rstrip("/") + ("/x" if prefix.endswith("/") else "x"))
        with _os_errors(self._root, "list", prefix):
            keys = sorted(self._walk(prefix))
        for key in keys:
            try:
                with _os_errors(self._root, "read", key):
                    yield self._info(key, self._path(listed_key(key)))
            except NotFoundError:
                continue  # deleted between listing and reading: no longer in the store

    def _walk(self, prefix: str) -> Iterator[str]:
        """Yield the keys of regular files under the directory covering `prefix`."""
        base_parts = prefix.split("/")[:-1]
        base = self._root.joinpath(*base_parts)
        if not base.is_dir():
            return
        self._refuse_linked_folder(str(base), prefix)  # os.walk would follow it
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue  # temporary files and the lock file
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error.

        Raises:
            InputError: the key is unsafe.
            BackendError: the filesystem refused the removal.
            IntegrityError: a directory stands at the key (planted).
        """
        path = self._path(key)
        # Under the lock of `put_if_match`: a replacement whose check passed just before
        # cannot put the object back after it is gone (a rewrap racing a destroy).
        with _os_errors(self._root, "delete", key), self._locked():
            # A replacement's temporary copy a crash left (a killed `keys rewrap` leaves
            # a wrapped data key there): deleting a key deletes every copy of it.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                _swap_temp(path).unlink()
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return
            _fsync_dir(path.parent)

    def remove_empty_prefix(self, prefix: str) -> None:
        """Remove the directories of `prefix` (e.g. `probe/<nonce>/`) that are empty.

        Only for a prefix no other writer uses (the conformance probe's scratch space):
        removing a directory a concurrent `put` is about to link into would fail it.
        """
        directory = self._path(prefix.rstrip("/") + "/x").parent
        while directory != self._root and self._root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (another probe), or already gone
                return
            directory = directory.parent


def _older(path: Path, before: datetime) -> bool:
    """Whether `path` was last changed before `before` (False: it is gone)."""
    try:
        return datetime.fromtimestamp(path.lstat().st_mtime, UTC) < before
    except FileNotFoundError:
        return False


def _empty_tree_older(folder: Path, before: datetime) -> bool:
    """Whether `folder` holds folders only, none of them changed since `before`."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        if filenames or not _older(Path(dirpath), before):
            return False
    return True


def _removed_empty_directory(path: Path) -> bool:
    """Remove an empty directory and its empty sub-folders; whether it was one.

    Where an object is to be created, and an emptied record folder. No object is a
    directory: an empty one at an object's path (planted, or left when
    objects planted under it were removed) holds nothing and would block the key for
    good; so does one holding only empty directories (`key/a/` left when `key/a/c` was
    removed). A directory with a file (or a link) anywhere in it stays.
    """
    if path.is_symlink() or not path.is_dir():
        return False
    inner = [Path(folder) for folder, _dirs, _files in os.walk(path)]
    for folder in sorted(inner, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # deepest first; refused while anything is in it
        except OSError:
            return False
    with contextlib.suppress(OSError):
        _fsync_dir(path.parent)
    return True


_O_PATH = getattr(os, "O_PATH", 0)
# Makings of a write's folder when another process keeps removing it (empty) meanwhile.
_FOLDER_ATTEMPTS = 3


def _resolved(path: str) -> str:
    """`os.path.realpath(path)`, in three system calls where the kernel can tell.

    The kernel resolves an existing path (every symlink on the way, the last one
    included) when it opens it; /proc names what it opened. A name that does not exist
    (not even as a dangling symlink) resolves to its resolved directory and the name,
    as `realpath` does. Anything else (another system, no /proc, a dangling symlink, a
    missing directory) goes through `realpath` itself.
    """
    if not _O_PATH:
        return os.path.realpath(path)
    try:
        return _opened_path(path)
    except FileNotFoundError:
        try:
            os.lstat(path)
        except FileNotFoundError:
            directory, name = os.path.split(path)
            with contextlib.suppress(OSError):
                return os.path.join(_opened_path(directory), name)  # noqa: PTH118
    except OSError:
        pass
    return os.path.realpath(path)


def _open_object(path: Path, key: str) -> io.BufferedReader:
    """Open an object's file for reading: a regular file, never a FIFO or a device.

    Opened without blocking, so a FIFO planted in the store (anyone with write access can
    make one) cannot hang the reader waiting for a writer; a directory is a prefix.

    Raises:
        IsADirectoryError: `path` is a directory.
        IntegrityError: `path` is a FIFO, socket or device.
        OSError: it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _require_regular(os.fstat(fd).st_mode, path, key)
        # O_NONBLOCK changes nothing for a regular file: left set (no extra syscalls on
        # every object read).
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _require_regular(mode: int, path: Path, key: str) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    if not stat.S_ISREG(mode):
        raise IntegrityError(
            f"object {key} is not a regular file (a FIFO or device planted in the store); remove it"
        )


def _opened_path(path: str) -> str:
    fd = os.open(path, _O_PATH | os.O_CLOEXEC)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")  # noqa: PTH115
    finally:
        os.close(fd)
    if not real.startswith("/"):  # not a path ("anon_inode:", say): ask realpath
        raise OSError(errno.EINVAL, "not a path")
    return real


def _swap_temp(path: Path) -> Path:
    """The temporary file `put_if_match` writes for `path`, under the store's lock.

    One name per key (made only under the lock, so never two at once): whatever stands
    there outside the lock was left by a crash, and `delete` removes it with the key.
    """
    digest = hashlib.sha256(path.name.encode("utf-8")).hexdigest()[:32]
    return path.with_name(f"{_TMP_PREFIX}swap-{digest}")


def _fsync_dir(directory: Path) -> None:
    """Make a directory's entries durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _os_errors(root: Path, operation: str, key: str) -> Iterator[None]:
    """Turn OS errors into the vault's error families, one line each."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"object {key} not found in {root}") from None
    except IsADirectoryError:
        if operation == "delete":
            # Only a planted directory stands where the vault deletes an object it wrote:
            # it would keep the delete from ever happening (a crypto-shred never done).
            raise IntegrityError(
                f"filesystem store {root}: delete {key}: a directory is planted where the "
                "object should be; remove it"
            ) from None
        raise NotFoundError(f"object {key} not found in {root} (it is a prefix)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            # A symlink loop (or a chain too long to follow) was planted in the store.
            raise IntegrityError(
                f"filesystem store {root}: {operation} {key}: a symlink loop planted in the store"
            ) from None
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        raise BackendError(f"filesystem store {root}: {operation} {key} failed: {reason}") from exc

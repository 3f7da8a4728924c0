"""Object stores: the ObjectStore protocol, the filesystem store and the S3 store.

`open_store` is the one place a store URL from the vault configuration becomes a store:
``file`` (objects inside the vault directory), ``file:///abs/path``, or
``s3://BUCKET[/PREFIX]`` (standard AWS configuration: profile, environment,
``AWS_ENDPOINT_URL_S3`` for S3-compatible servers).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from pcii_vault.errors import ConfigError
from pcii_vault.store.base import ObjectInfo, ObjectStore, validate_key
from pcii_vault.store.filesystem import FilesystemStore

__all__ = ["ObjectInfo", "ObjectStore", "open_store", "validate_key"]


def open_store(url: str, *, root_for_file: Path, create: bool = False) -> ObjectStore:
    """Open the store named by `url`.

    Args:
        url: ``file``, ``file:///absolute/path`` or ``s3://BUCKET[/PREFIX]``.
        root_for_file: the directory a bare ``file`` store keeps its objects in.
        create: a new vault's store: a ``file:///`` directory is created if missing.
            Otherwise a missing one is refused (BackendError: moved or not mounted),
            never replaced by an empty store; the bare ``file`` store inside the vault
            directory is created either way, and a deleted one reads as a deleted log.

    Returns:
        The store (a FilesystemStore or an S3Store).

    Raises:
        ConfigError: the URL is malformed or names an unsupported scheme.
        BackendError: a ``file:///`` directory is missing (and not `create`).
    """
    if url == "file":
        return FilesystemStore(root_for_file)
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"store URL {url!r} must not have a query or fragment")
    if parts.scheme == "file":
        path = unquote(parts.path)
        if "\0" in path:
            raise ConfigError(f"store URL {url!r} holds a NUL character")
        if parts.netloc not in {"", "localhost"} or not path.startswith("/"):
            raise ConfigError(f"store URL {url!r} must be file:///absolute/path")
        return FilesystemStore(Path(path), create=create)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"store URL {url!r} names no bucket (s3://BUCKET[/PREFIX])")
        # Imported here so the embedded default never pays for loading boto3.
        from pcii_vault.store.s3 import S3Store  # noqa: PLC0415

        return S3Store(parts.netloc, parts.path.strip("/"))
    raise ConfigError(f"store URL {url!r} is not file, file:///PATH or s3://BUCKET[/PREFIX]")

"""`pcii serve`: one process holds the unsealed keys; users act over HTTPS with their identity."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcii_vault.cli.output import CliState
from pcii_vault.errors import ConfigError, InputError

if TYPE_CHECKING:
    import socket
    from datetime import timedelta

    from pcii_vault.config import Batching
    from pcii_vault.service.app import ServiceLimits
    from pcii_vault.service.seal import Seal
    from pcii_vault.service.tls import ServerCertificate
    from pcii_vault.service.workers import Listener
    from pcii_vault.vault import Vault

__all__ = ["DEFAULT_LISTEN", "serve", "unseal"]

DEFAULT_LISTEN = "127.0.0.1:8443"


def serve(
    ctx: typer.Context,
    listen: Annotated[
        str,
        typer.Option("--listen", metavar="HOST:PORT", help="Address to listen on (HTTPS)."),
    ] = DEFAULT_LISTEN,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            metavar="FILE",
            help="The server's certificate (PEM); default: a self-signed one, made once.",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            metavar="FILE",
            help="The certificate's private key (PEM), with --tls-cert.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            metavar="N",
            help="Serving processes on the one address (one per core is a good start).",
        ),
    ] = 1,
) -> None:
    """Serve the vault over HTTPS: unseal once here, users need only their identity key."""
    import shutil

    from pcii_vault.cli.session import vault_dir
    from pcii_vault.config import Settings
    from pcii_vault.service.app import ServiceLimits, private_spool
    from pcii_vault.service.httpsig import SharedNonceCache
    from pcii_vault.service.tls import ensure_self_signed, load_certificate
    from pcii_vault.service.workers import (
        MAX_WORKERS,
        Listener,
        WorkerSpec,
        bind,
        supervise,
    )

    state: CliState = ctx.obj
    root = vault_dir(state)
    host, port = _listen_address(listen)
    if (tls_cert is None) != (tls_key is None):
        raise InputError("give --tls-cert and --tls-key together (or neither)")
    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers {workers}: give 1 to {MAX_WORKERS} serving processes")
    settings = Settings.from_environment()
    _log_access_lines(settings.log_format)
    skew = _seconds(settings.server_skew_s)
    vault, seal, secrets = _open(state, root, workers, settings.batching(serving=True), skew)
    spool: Path | None = None
    sock: socket.socket | None = None
    try:
        if seal is None:
            # Unseal and catch up before the first request: a new replica rebuilds its
            # index from the verified log here.
            vault.keyring  # noqa: B018 -- opens the keys (asks for the unseal secret)
            vault.sync()
        # Bound before the certificate: an address that cannot be listened on is named as
        # such, and no pair is made for it (nor the pinned one called wrong for it).
        sock = bind(host, port)
        if tls_cert is not None and tls_key is not None:
            certificate = load_certificate(tls_cert, tls_key)
        else:
            certificate = ensure_self_signed(root / "tls", [host, *_public_names(host)])
        # This process's spool: its releases, or (with workers) their shared nonces.
        spool = private_spool(root / "spool")
        limits = ServiceLimits(
            max_body=settings.server_max_body,
            max_upload=settings.server_max_upload,
            read_timeout=settings.server_read_timeout_s,
            skew=skew,
        )
        # The HTTP nonces this vault's servers accepted, in the vault's spool: shared by
        # the workers, and kept across restarts (a replay after one is refused too).
        nonces = spool.parent / "nonces.sqlite"
        SharedNonceCache(nonces, limits.skew).close()  # made (or made anew) before announcing
        _announce(state, vault, f"https://{_client_host(host)}:{port}", certificate, seal, workers)
        listener = Listener(host, port, certificate.cert_path, certificate.key_path)
        if workers == 1:
            _serve_here(vault, spool, limits, seal, nonces, sock, listener)
            return
        vault.close()  # each worker opens its own
        spec = WorkerSpec(
            root,
            secrets[-1] if secrets else None,
            listener,
            limits,
            settings.batching(serving=True),
            json_logs=settings.log_format != "console",
            nonces=nonces,
        )
        if failed := supervise(spec, sock, workers):
            raise typer.Exit(failed)
    finally:
        vault.close()  # commits the pending batch, then releases the keys
        if sock is not None:
            sock.close()
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)


def _open(
    state: CliState, root: Path, workers: int, batching: Batching, skew: timedelta
) -> tuple[Vault, Seal | None, list[bytes]]:
    """The vault, its seal if custodians unseal it remotely, and where its secret goes."""
    from pcii_vault.cli.session import open_vault
    from pcii_vault.service.seal import Seal
    from pcii_vault.vault import Vault

    if not _starts_sealed(root):
        secrets: list[bytes] = []  # what unseals the keys here, for worker processes
        return open_vault(state, keep_secret=secrets, serving=True), None, secrets
    if workers > 1:
        raise InputError(
            f"--workers {workers}: this vault is split into shares and starts sealed, "
            "and custodians unseal one process; serve with one worker, or give the "
            "share files in PCII_UNSEAL_SHARES"
        )
    # Shares and no PCII_UNSEAL_SHARES: custodians unseal it remotely (`pcii unseal`).
    seal: Seal | None = None
    vault = Vault(root, unseal=lambda: _sealed(seal).secret(), batching=batching)
    seal = Seal(vault, skew=skew)
    return vault, seal, []


def _serve_here(
    vault: Vault,
    spool: Path,
    limits: ServiceLimits,
    seal: Seal | None,
    nonces: Path,
    sock: socket.socket,
    listener: Listener,
) -> None:
    """Serve in this process (one worker) until stopped."""
    from pcii_vault.service.app import create_app
    from pcii_vault.service.httpsig import SharedNonceCache
    from pcii_vault.service.workers import run_server

    seen = SharedNonceCache(nonces, limits.skew)
    try:
        run_server(
            create_app(vault, spool=spool, limits=limits, seal=seal, nonces=seen), sock, listener
        )
    finally:
        seen.close()


def _announce(
    state: CliState,
    vault: Vault,
    url: str,
    certificate: ServerCertificate,
    seal: Seal | None,
    workers: int,
) -> None:
    """The first line a server prints: where it is and the certificate to pin."""
    import sys

    cert = certificate.cert_path.absolute()  # a path to hand out, whatever --vault said
    lines = [
        f"serving vault {vault.config.vault_id} at {url}",
        f"certificate: {cert}",
        f"SHA-256 fingerprint: {certificate.fingerprint_sha256}",
        *([f"workers: {workers} processes"] if workers > 1 else []),
        f"clients: pcii --vault {url} --ca {cert} --as KEYFILE ...",
    ]
    if seal is not None:
        lines.append(
            f"sealed: custodians unseal it with `pcii --vault {url} --ca {cert} --as KEYFILE "
            "unseal --share FILE`"
        )
    state.output.result(
        {
            "url": url,
            "vault_id": vault.config.vault_id,
            "certificate": str(cert),
            "fingerprint_sha256": certificate.fingerprint_sha256,
            "sealed": seal is not None,
            "workers": workers,
        },
        human="\n".join(lines),
    )
    sys.stdout.flush()


def _starts_sealed(root: Path) -> bool:
    """Split into shares, and neither share files nor a passphrase given: start sealed.

    A passphrase in the environment is tried as `open_vault` does, so that a claim of
    shares edited into `vault.json` is found by its seal (exit 4).
    """
    import os

    from pcii_vault.config import VaultConfig, VaultPaths
    from pcii_vault.keys.local import UNSEAL_SECRET_ENV
    from pcii_vault.keys.shares import SHARES_ENV

    config = VaultConfig.load(VaultPaths(root).config)
    given = os.environ.get(SHARES_ENV) or os.environ.get(UNSEAL_SECRET_ENV)
    return config.unseal_threshold is not None and not given


def _sealed(seal: Seal | None) -> Seal:
    if seal is None:  # pragma: no cover - the vault asks only once the seal exists
        raise RuntimeError("no seal")
    return seal


def _listen_address(listen: str) -> tuple[str, int]:
    host, sep, port_text = listen.rpartition(":")
    bracketed = host.startswith("[") or host.endswith("]")
    if bracketed and not (host.startswith("[") and host.endswith("]") and len(host) > 2):
        raise InputError(f"--listen {listen!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN} or [::1]:8443")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        raise InputError(f"--listen {listen!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    if not 0 < int(port_text) < 65536:
        raise InputError(f"--listen {listen!r}: the port must be 1 to 65535")
    return host, int(port_text)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _public_names(host: str) -> list[str]:
    """The names clients on other machines reach a wildcard address (0.0.0.0, ::) by.

    This machine's name (fully qualified when the resolver knows it), when it is a valid
    certificate name; nothing for a specific address, which clients use as it is.
    """
    import socket

    from pcii_vault.service.tls import valid_host_name

    if not _wildcard(host):
        return []
    names: list[str] = []
    for found in (socket.getfqdn(), socket.gethostname()):
        name = found.lower().rstrip(".")
        if name != "localhost" and name not in names and valid_host_name(name):
            names.append(name)
    return names


def _client_host(host: str) -> str:
    """The host clients name in their URL.

    For a wildcard address (no client connects to 0.0.0.0) this machine's name, or
    127.0.0.1 when it has no usable one.
    """
    if not _wildcard(host):
        return _url_host(host)
    names = _public_names(host)
    return names[0] if names else "127.0.0.1"


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _seconds(value: float) -> timedelta:
    from datetime import timedelta

    return timedelta(seconds=value)


def _log_access_lines(log_format: str) -> None:
    """Access lines are the server's record of who called what: INFO, JSON by default."""
    import logging

    from pcii_vault.cli.app import configure_logging

    configure_logging(level=logging.INFO, json_logs=log_format != "console")


def unseal(
    ctx: typer.Context,
    share: Annotated[
        Path,
        typer.Option(
            "--share",
            metavar="FILE",
            help="Your unseal share (one SLIP-39 mnemonic) for the sealed server.",
        ),
    ],
) -> None:
    """Offer your unseal share to a sealed `pcii serve` (a custodian's signed act)."""
    from pcii_vault.cli.session import client
    from pcii_vault.client import EMBEDDED_UNSEAL
    from pcii_vault.keys.shares import SHARE_WORDS, read_share_file
    from pcii_vault.service.wire import MAX_SHARE_CHARS

    state: CliState = ctx.obj
    if state.server is None:
        # Said before the vault is opened: opening asks for the very shares or secret
        # this command was run to give, and following that advice led here anyway.
        raise ConfigError(EMBEDDED_UNSEAL)
    # Bounded (a share is a few hundred bytes, and /dev/zero is not one), owner-only.
    text = read_share_file(share)
    if len(text) > MAX_SHARE_CHARS:  # what the server takes; never echoed back
        raise InputError(
            f"unseal share {share} is {len(text)} characters, not one share "
            f"(a share is {SHARE_WORDS} words)"
        )
    with client(state) as me:
        answer = me.unseal(text)
    if answer.get("sealed"):
        human = (
            f"share accepted: {answer['shares']} of {answer['threshold']}; "
            f"{answer['missing']} more needed"
        )
        if warning := answer.get("warning"):
            human += f"\nwarning: {warning}"
    else:
        human = "unsealed: the server is ready (the attempts are in the log)"
    state.output.result(answer, human=human)

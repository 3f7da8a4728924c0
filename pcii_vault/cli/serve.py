"""`pcii serve`: one process holds the unsealed keys; users act over HTTPS with their identity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcii_vault.cli.output import CliState
from pcii_vault.errors import InputError

if TYPE_CHECKING:
    from datetime import timedelta

__all__ = ["DEFAULT_LISTEN", "serve"]

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
) -> None:
    """Serve the vault over HTTPS: unseal once here, users need only their identity key."""
    import shutil
    import signal

    import uvicorn

    from pcii_vault.cli.session import open_vault, vault_dir
    from pcii_vault.config import Settings
    from pcii_vault.service.app import ServiceLimits, create_app, private_spool
    from pcii_vault.service.tls import ensure_self_signed, load_certificate

    state: CliState = ctx.obj
    root = vault_dir(state)
    host, port = _listen_address(listen)
    if (tls_cert is None) != (tls_key is None):
        raise InputError("give --tls-cert and --tls-key together (or neither)")
    settings = Settings.from_environment()
    _log_access_lines(settings.log_format)
    vault = open_vault(state)
    spool: Path | None = None
    try:
        # Unseal and catch up before the first request: a new replica rebuilds its index
        # from the verified log here.
        vault.keyring  # noqa: B018 -- opens the keys (asks for the unseal secret)
        vault.sync()
        if tls_cert is not None and tls_key is not None:
            certificate = load_certificate(tls_cert, tls_key)
        else:
            certificate = ensure_self_signed(root / "tls", [host])
        spool = private_spool(root / "spool")
        limits = ServiceLimits(
            max_body=settings.server_max_body,
            max_upload=settings.server_max_upload,
            read_timeout=settings.server_read_timeout_s,
            skew=_seconds(settings.server_skew_s),
        )
        app = create_app(vault, spool=spool, limits=limits)
        url = f"https://{_url_host(host)}:{port}"
        state.output.result(
            {
                "url": url,
                "vault_id": vault.config.vault_id,
                "certificate": str(certificate.cert_path),
                "fingerprint_sha256": certificate.fingerprint_sha256,
            },
            human=(
                f"serving vault {vault.config.vault_id} at {url}\n"
                f"certificate: {certificate.cert_path}\n"
                f"SHA-256 fingerprint: {certificate.fingerprint_sha256}\n"
                f"clients: pcii --vault {url} --ca {certificate.cert_path} --as KEYFILE ..."
            ),
        )
        import sys

        sys.stdout.flush()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=str(certificate.cert_path),
            ssl_keyfile=str(certificate.key_path),
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=30,
            server_header=False,
        )
        # uvicorn shuts down gracefully on SIGTERM (in-flight requests finish), then
        # raises the signal again for the handler it found: ours only notes it, so the
        # pending batch is committed below and the process exits 0.
        signal.signal(signal.SIGTERM, lambda *_: None)
        uvicorn.Server(config).run()
    finally:
        vault.close()  # commits the pending batch, then releases the keys
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)


def _listen_address(listen: str) -> tuple[str, int]:
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(f"--listen {listen!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port_text)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _seconds(value: float) -> timedelta:
    from datetime import timedelta

    return timedelta(seconds=value)


def _log_access_lines(log_format: str) -> None:
    """Access lines are the server's record of who called what: INFO, JSON by default."""
    import logging
    import sys

    import structlog

    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )

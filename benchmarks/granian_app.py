"""The `pcii serve` application under granian, for `benchmarks/service.py --server granian`.

Not how the vault is served (that is `pcii serve`, uvicorn): granian loads its
application by import path in each of its worker processes, so this factory opens the
vault named by `PCII_BENCH_VAULT` with `PCII_UNSEAL_SECRET`, as a worker of
`pcii serve --workers` does, and returns the same ASGI application. It exists to choose
the ASGI server by measurement.

Run by the benchmark as:
  python -m granian --interface asgi --factory benchmarks.granian_app:app ...
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pcii_vault.cli.app import configure_logging
from pcii_vault.config import Settings
from pcii_vault.service.app import Service, create_app, private_spool
from pcii_vault.vault import Vault


def app() -> Service:
    """The vault's application, its keys open and its index caught up."""
    configure_logging(level=logging.INFO, json_logs=True)
    root = Path(os.environ["PCII_BENCH_VAULT"])
    secret = os.environ["PCII_UNSEAL_SECRET"].encode()
    vault = Vault(root, unseal=lambda: secret, batching=Settings.from_environment().batching())
    vault.keyring  # noqa: B018 -- opens the keys before the first request
    vault.sync()
    return create_app(vault, spool=private_spool(root / "spool"))

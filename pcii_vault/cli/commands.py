"""Where every audience's commands join the root app."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach each audience's sub-app or commands to the root `app`."""

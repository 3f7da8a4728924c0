"""The listening socket: a second server on the same address is refused in its parent."""

from __future__ import annotations

import socket

import pytest

from pcii_vault.errors import InputError
from pcii_vault.service.workers import bind


def test_a_second_bind_of_a_bound_port_is_refused_at_once() -> None:
    """Both bound before either listened: with SO_REUSEADDR both binds pass; listening
    in `bind` makes the second fail there, not later in its workers, silently."""
    first = bind("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
        # It listens already: a client connects before any worker exists.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        first.close()

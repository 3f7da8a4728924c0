"""Memory stays bounded: sealing and opening 1 GiB grows peak RSS by less than 64 MiB.

Each measurement runs in a fresh interpreter, so the peak (ru_maxrss) belongs to the
operation alone and not to whatever earlier tests allocated.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

GIB = 1 << 30
LIMIT = 64 << 20

_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, resource, sys
    from pcii_vault.crypto.envelope import ObjectContext, open_object, seal_object

    GIB = 1 << 30
    PIECE = 1 << 20
    ctx = ObjectContext("v-mem", "PCII-MEM", "document")
    dek = bytes(range(32))

    def source():
        # One reused buffer; a counter makes every piece different.
        buffer = bytearray(PIECE)
        for n in range(GIB // PIECE):
            buffer[:8] = n.to_bytes(8, "big")
            yield buffer

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    # Warm up code paths (thread pool, cipher) so their one-off allocations are in the base.
    list(open_object(dek, ctx, seal_object(dek, ctx, [bytes(4 << 20)], kek_version=1)))
    mode = sys.argv[1]
    base = peak()
    sealed = seal_object(dek, ctx, source(), kek_version=1)
    if mode == "seal":
        stored = sum(len(c) for c in sealed)
        result = {"plaintext": sealed.plaintext_size, "stored": stored}
    else:
        opened = open_object(dek, ctx, sealed)
        size = sum(len(c) for c in opened)
        result = {"plaintext": size, "sha": opened.plaintext_sha256 == sealed.plaintext_sha256}
    result["growth"] = peak() - base
    print(json.dumps(result))
    """
)


def _run(mode: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_sealing_one_gib_keeps_peak_rss_growth_under_64_mib() -> None:
    result = _run("seal")
    assert result["plaintext"] == GIB
    assert result["stored"] > GIB
    assert result["growth"] < LIMIT, f"peak RSS grew by {result['growth'] >> 20} MiB"


@pytest.mark.slow
def test_opening_one_gib_keeps_peak_rss_growth_under_64_mib() -> None:
    result = _run("open")
    assert result["plaintext"] == GIB
    assert result["sha"]
    assert result["growth"] < LIMIT, f"peak RSS grew by {result['growth'] >> 20} MiB"

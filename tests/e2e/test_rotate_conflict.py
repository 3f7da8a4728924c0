"""Two administrators run `pcii keys rotate` at the same moment: exactly one rotates.

Each request signs the version it makes (the logged current one + 1): the second to
arrive finds that version made and is refused (exit 3), instead of making a second
version nobody asked for.
"""

from __future__ import annotations

import threading

import pytest

from tests.e2e.conftest import IN_BOTH_MODES, Cli, Result, one_line_error

pytestmark = pytest.mark.slow

ROUNDS = 3


@IN_BOTH_MODES
def test_two_rotations_at_once_make_one_version(populated: Cli) -> None:
    cli = populated
    for n in range(ROUNDS):
        before = cli.ok("--json", "keys", "status", who="admin").json()["current_version"]
        results: list[Result] = []
        start = threading.Barrier(2)

        def rotate(start: threading.Barrier = start, results: list[Result] = results) -> None:
            start.wait()
            results.append(cli.run("keys", "rotate", who="admin"))

        threads = [threading.Thread(target=rotate) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(r.code for r in results)
        assert codes in ([0, 3], [0, 0]), (n, [(r.code, r.err) for r in results])
        after = cli.ok("--json", "keys", "status", who="admin").json()["current_version"]
        if codes == [0, 0]:
            # The second read the status after the first had rotated: two rotations, one
            # after the other (not at once); each made the version it signed.
            assert after == before + 2
            continue
        assert after == before + 1, (n, before, after)
        refused = next(r for r in results if r.code == 3)
        assert "another rotation came first" in one_line_error(refused, 3)
    cli.ok("audit", "verify")

"""Start-up cost of `pcii --help` and `pcii --version`, beside a bare interpreter.

Each command runs as a new process, alternating, `--runs` times: `python -c pass`,
`python -c "import typer"`, `pcii --help`, `pcii --version` (the same interpreter, the
installed entry point). Prints the median and min wall-clock time of each and the ratio
of the medians to `python -c pass`; the target is `pcii --help` <= 12x.

Run: .venv/bin/python benchmarks/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PCII = str(Path(sys.executable).with_name("pcii"))
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "pcii --help": [PCII, "--help"],
    "pcii --version": [PCII, "--version"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    print(
        f"start-up, {args.runs} runs alternating, python {sys.version.split()[0]}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:26} median {median * 1000:6.1f} ms  min {min(values) * 1000:6.1f} ms"
            f"  {median / base:5.1f}x"
        )


if __name__ == "__main__":
    main()

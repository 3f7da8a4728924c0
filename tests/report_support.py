"""What the report's tests need from the system, installed when missing (not a test module).

- headless Chromium (Debian package `chromium`) to render the page as a reader would;
- Pango (Debian `libpango-1.0-0`, `libpangoft2-1.0-0`) for WeasyPrint's `--pdf`.

CI runs as root on a clean Debian machine that reaches Debian's package archive, so a
missing package is installed with apt-get (once per test session); elsewhere the tests
that need it fail with the command to run.

`Browser` runs Chromium headless with network access disabled (every host resolves to
nothing and every connection goes to a closed proxy) and a fresh profile, and records
its network log, so a test can check that opening the page made no request but the file.
"""

from __future__ import annotations

import ctypes.util
import functools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["Browser", "DomSummary", "ensure_chromium", "ensure_pango", "summarise_dom"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    # Network access disabled: nothing resolves, and any connection goes to a closed port.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"missing system packages; run: apt-get install -y {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        check=True,
        env=env,
        capture_output=True,
    )


@functools.cache
def ensure_chromium() -> str:
    """The Chromium binary, installed from Debian when missing."""
    found = shutil.which("chromium")
    if found is None:
        _apt_install("chromium")
        found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("apt-get installed chromium but it is not on PATH")
    return found


@functools.cache
def ensure_pango() -> None:
    """Pango for WeasyPrint, installed from Debian when missing."""
    if ctypes.util.find_library("pango-1.0") is None or (
        ctypes.util.find_library("pangoft2-1.0") is None
    ):
        _apt_install("libpango-1.0-0", "libpangoft2-1.0-0", "fonts-dejavu-core")


@dataclass
class Browser:
    """One headless Chromium run per call, each with a fresh profile under `workdir`."""

    binary: str
    workdir: Path

    def _run(self, name: str, url: str, *extra: str) -> tuple[str, str, list[str]]:
        profile = self.workdir / f"profile-{name}"
        netlog = self.workdir / f"netlog-{name}.json"
        done = subprocess.run(
            [
                self.binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--log-net-log={netlog}",
                "--enable-logging=stderr",
                "--v=0",
                *extra,
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout, done.stderr, requested_urls(netlog)

    def dump_dom(self, url: str) -> tuple[str, str, list[str]]:
        """(serialised DOM, Chromium's log, URLs requested)."""
        return self._run("dom", url, "--dump-dom")

    def screenshot(self, url: str, png: Path, height: int) -> list[str]:
        """Take a screenshot of the page's first `height` pixels; return URLs requested."""
        _, _, urls = self._run("shot", url, f"--screenshot={png}", f"--window-size=1280,{height}")
        return urls


def requested_urls(netlog: Path) -> list[str]:
    """Every URL a page asked Chromium's network stack for, from its net log.

    Chromium itself also talks to its own services (time, updates, accounts) whatever the
    flags; those jobs have no initiating origin ("not an origin") and no page's network
    isolation key, and are left out. A request made by a page opened from a file carries
    the opaque initiator "null" and the key "file://", and is counted.
    """
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # a log cut short at exit lacks its closing brackets
        data = json.loads(text.rstrip(",\n") + "]}")
    start_job = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in data.get("events", []):
        params = event.get("params") or {}
        if event.get("type") != start_job or "url" not in params:
            continue
        by_page = params.get("initiator") != "not an origin" or "file://" in str(
            params.get("network_isolation_key", "")
        )
        if by_page:
            urls.append(str(params["url"]))
    return urls


@dataclass
class DomSummary:
    """What the report page's DOM holds, as the tests look at it."""

    text: str
    headings: list[str]
    scripts: int
    charts: dict[str, dict[str, int]]  # chart name -> {"svg": n, "bars": n, "dots": n}


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.headings: list[str] = []
        self.scripts = 0
        self.charts: dict[str, dict[str, int]] = {}
        self._chart: str | None = None
        self._heading: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
        if tag in {"style", "script", "desc"}:
            self._skip += 1
        if tag == "figure" and "data-chart" in a:
            self._chart = a["data-chart"]
            self.charts[self._chart] = {"svg": 0, "bars": 0, "dots": 0}
        if tag in {"h1", "h2"}:
            self._heading = []
        if self._chart is None:
            return
        counts = self.charts[self._chart]
        classes = a.get("class", "").split()
        if tag == "svg":
            counts["svg"] += 1
        elif (
            tag == "rect"
            and {"rect", "reactive"} <= set(classes)
            and float(a.get("height") or 0) > 0
        ):
            counts["bars"] += 1
        elif tag == "circle" and "dot" in classes:
            counts["dots"] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "script", "desc"}:
            self._skip = max(0, self._skip - 1)
        if tag == "figure":
            self._chart = None
        if tag in {"h1", "h2"} and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def summarise_dom(html: str) -> DomSummary:
    """Headings, visible text, scripts and the marks of each chart of a report page."""
    walker = _Walker()
    walker.feed(html)
    walker.close()
    return DomSummary(
        " ".join("".join(walker.text).split()), walker.headings, walker.scripts, walker.charts
    )

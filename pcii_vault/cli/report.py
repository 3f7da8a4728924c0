"""`pcii audit report`: the auditor's report from the verified log (page, PDF, JSON, CSV).

Without an output option it prints the report's counts (as it always did); with `--html`,
`--pdf`, `--csv` or `--proofs` it writes those files. A log that is not sound still gets
its report (which says so at the top), then the command exits 4.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pcii_vault.cli.audit import (
    KeyOption,
    LogOption,
    _parse_time,
    open_log_noting,
    read_trusted_checkpoint,
    time_range,
)
from pcii_vault.cli.files import new_directory, new_output, output_key, refuse_existing
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import refuse_undecodable
from pcii_vault.errors import InputError, IntegrityError

if TYPE_CHECKING:
    from pcii_vault.ledger.log import Ledger
    from pcii_vault.report import AuditReport

__all__ = ["report"]

_COUNTS = (
    "events_by_type",
    "denials_by_principal",
    "records_by_state",
    "releases_by_record",
    "principals_by_status",
)


def _option(flag: str, text: str, metavar: str) -> Any:  # noqa: ANN401 -- typer's OptionInfo
    return typer.Option(flag, help=text, metavar=metavar, show_default=False)


def report(
    ctx: typer.Context,
    html: Annotated[Path | None, _option("--html", "Write the report page here.", "FILE")] = None,
    pdf: Annotated[Path | None, _option("--pdf", "Write the report as PDF here.", "FILE")] = None,
    since: Annotated[str | None, _option("--since", "Period start (ISO 8601).", "TIME")] = None,
    until: Annotated[str | None, _option("--until", "Period end (ISO 8601).", "TIME")] = None,
    record: Annotated[
        str | None, _option("--record", "Only this tracking number.", "TRACKING")
    ] = None,
    proofs: Annotated[
        Path | None,
        _option(
            "--proofs", "Write each release's inclusion proof bundle into this directory.", "DIR"
        ),
    ] = None,
    csv_dir: Annotated[
        Path | None, _option("--csv", "Write each table as CSV into this directory.", "DIR")
    ] = None,
    trusted_checkpoint: Annotated[
        Path | None, _option("--trusted-checkpoint", "A checkpoint file seen before.", "FILE")
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
    skip_decision_replay: Annotated[
        bool,
        typer.Option(
            "--skip-decision-replay",
            help="Do not re-run logged decisions (when the policysets/ beside the log "
            "were not copied); the report says so.",
        ),
    ] = False,
) -> None:
    """The auditor's report from the verified log: page, PDF, figures, tables, findings."""
    from pcii_vault.ledger.log import Ledger
    from pcii_vault.report import Period, compile_report, ensure_pdf_support, figures_json

    state: CliState = ctx.obj
    if record is not None:
        refuse_undecodable("--record", record)
    period = Period(_parse_time(since, "--since"), _parse_time(until, "--until"), record)
    time_range(period.since, period.until)
    targets = ((html, "--html"), (pdf, "--pdf"), (csv_dir, "--csv"), (proofs, "--proofs"))
    named: dict[Path, str] = {}
    for target, option in targets:
        if target is not None:
            refuse_existing(target, option)  # before the long pass over the log
            same = named.setdefault(output_key(target), option)
            if same != option:
                raise InputError(f"{same} and {option} name the same path: {target}")
    if pdf is not None:
        ensure_pdf_support()  # before the long pass over the log, not after it
    store, verifier, head_problem = open_log_noting(state, log, key)
    trusted = read_trusted_checkpoint(trusted_checkpoint, verifier)
    with tempfile.TemporaryDirectory(prefix="pcii-report-") as scratch:
        result = compile_report(
            store,
            verifier,
            period=period,
            scratch=Path(scratch),
            now=datetime.now(UTC),
            trusted=trusted,
            replay_decisions=not skip_decision_replay,
        )
        if head_problem is not None and result.verification.sound:
            # The log's head is not the vault's (rolled back or forked from its anchor):
            # what was read of it is reported, as not sound.
            unsound = dataclasses.replace(result.verification, sound=False, problem=head_problem)
            result = dataclasses.replace(result, verification=unsound)
        try:
            outputs = _Outputs(html, pdf, csv_dir, proofs, Path(scratch))
            written = outputs.write(
                result, Ledger(store, verifier.name, signer=None, verifier=verifier.public_key)
            )
            data = {**figures_json(result), "files": written}
        finally:
            result.spool.close()
    verification = result.verification
    problem = None
    if not verification.sound:
        where = f"; report written to {', '.join(map(str, _paths(written)))}" if written else ""
        problem = f"log NOT sound: {verification.problem}{where}"
    if problem is not None and state.output.json_mode:
        # One JSON object on stdout, as for any error: the report with the error in it.
        state.output.result({**data, "error": problem, "exit_code": IntegrityError.exit_code})
        raise typer.Exit(IntegrityError.exit_code)
    _show(state, data, written)
    if problem is not None:
        raise IntegrityError(problem)


@dataclass(frozen=True)
class _Outputs:
    html: Path | None
    pdf: Path | None
    csv_dir: Path | None
    proofs: Path | None
    scratch: Path

    def write(self, result: AuditReport, ledger: Ledger) -> dict[str, Any]:
        """Write every file asked for; return what was written.

        The proofs go into a new directory that gets its name only once every other
        output is written: a report that fails leaves no proofs behind.
        """
        # Proofs only of a sound log: a bundle from a broken tree would prove nothing.
        if self.proofs is None or not result.verification.sound:
            return self._pages(result, None)
        # Like a file output: a missing parent directory is exit 2, not created.
        with new_directory(self.proofs, "--proofs", parents=False) as tmp:
            page_dir = self.html or self.pdf or self.proofs
            proof_href = _write_proofs(result, ledger, tmp, self.proofs, page_dir)
            written = self._pages(result, proof_href)
        return {**written, "proofs": str(self.proofs)}

    def _pages(
        self, result: AuditReport, proof_href: Callable[[int], str] | None
    ) -> dict[str, Any]:
        """Write the page, the PDF and the tables asked for; return what was written."""
        made: list[Path] = []
        try:
            return self._write_pages(result, proof_href, made)
        except BaseException:
            # A report that fails part-way leaves none of its outputs behind.
            for path in made:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            raise

    def _write_pages(
        self,
        result: AuditReport,
        proof_href: Callable[[int], str] | None,
        made: list[Path],
    ) -> dict[str, Any]:
        from pcii_vault.report import write_csv, write_html, write_pdf

        written: dict[str, Any] = {}
        if self.html is not None:
            # Written beside its final name, so the links to the proofs stay relative.
            with new_output(self.html, "--html") as page:
                write_html(result, page, proof_href=proof_href)
            made.append(self.html)
            written["html"] = str(self.html)
        if self.pdf is not None:
            page = self.html or self.scratch / "report.html"
            if self.html is None:
                write_html(result, page, proof_href=proof_href)
            with new_output(self.pdf, "--pdf") as pdf:
                write_pdf(page, pdf)
            made.append(self.pdf)
            written["pdf"] = str(self.pdf)
        if self.csv_dir is not None:
            with new_directory(self.csv_dir, "--csv") as tables:
                names = [p.name for p in write_csv(result, tables)]
            made.append(self.csv_dir)
            written["csv"] = [str(self.csv_dir / name) for name in names]
        return written


def _paths(written: dict[str, Any]) -> list[str]:
    """The files and directories written: the CSV tables as their directory."""
    paths = {**written}
    if "csv" in paths:
        paths["csv"] = str(Path(paths["csv"][0]).parent) if paths["csv"] else ""
    return [str(paths[k]) for k in ("html", "pdf", "csv", "proofs") if paths.get(k)]


def _write_proofs(
    result: AuditReport, ledger: Ledger, tmp: Path, directory: Path, page: Path
) -> Callable[[int], str]:
    """Write every release's proof bundle, against the report's checkpoint, into `tmp`.

    `tmp` is new and becomes `directory` afterwards (`new_directory`): nothing in it
    can be a planted file or symlink.

    Returns:
        Each release's link target in `directory`, relative to the page's directory.
    """
    from pcii_vault.ledger.proof import prove

    checkpoint = result.checkpoint
    for row in result.spool.rows("releases"):
        seq = int(row["seq"])
        bundle = prove(ledger, seq, checkpoint)
        path = tmp / f"access-{seq}.json"
        try:
            path.write_text(
                json.dumps(bundle.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise InputError(
                f"cannot write --proofs {directory / path.name}: {exc.strerror}"
            ) from exc
    base = page.resolve().parent

    def href(seq: int) -> str:
        target = (directory / f"access-{seq}.json").resolve()
        # A URL, not a path: `#`, `?`, `%` or `:` in a folder's name would end the path,
        # start a query, or read as a scheme.
        return urllib.parse.quote(Path(os.path.relpath(target, base)).as_posix())

    return href


def _show(state: CliState, data: dict[str, Any], written: dict[str, Any]) -> None:
    output = state.output
    if output.json_mode:
        output.result(data)
        return
    verification = data["verification"]
    if verification["size"] is None:  # no checkpoint verified: nothing to count
        output.note("log NOT sound: no verified checkpoint")
    else:
        verdict = "log sound" if verification["sound"] else "log NOT sound"
        output.note(f"{verdict}: {verification['size']} events, root {verification['root']}")
    if written:
        for name in _paths(written):
            output.result({"file": name}, f"report: {name}")
        output.note(f"findings: {len(data['findings'])}")
        return
    for title in _COUNTS:
        counts: dict[str, int] = data[title]
        # "events_by_type" -> columns "type", "events": a table says what it counts even
        # where its title is not shown (tab-separated rows when stdout is not a terminal).
        what, _, by = title.partition("_by_")
        output.rows(
            [{by: name, what: count} for name, count in counts.items()],
            [by, what],
            title=title.replace("_", " "),
        )

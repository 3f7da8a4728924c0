"""`pcii policy`: check, test and explain the protection policies.

Invariants: `check` lists every problem of a policy directory and exits 2 when there is
any; `test` runs declarative cases and exits 2 when any case fails (the policy set or
the cases are wrong: bad input, not a malfunction); `explain` decides one request and
shows the determining policies with their file, line and the rule they cite. Nothing
here changes a vault.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import DEFAULT_USE, aware_time, path_argument, refuse_undecodable
from pcii_vault.durable import read_bounded
from pcii_vault.errors import InputError

if TYPE_CHECKING:
    from pcii_vault.policy.engine import PolicyEngine

__all__ = ["app"]

app = CliTyper(
    help="Check, test and explain the protection policies.",
    no_args_is_help=True,
)

_DIR_HELP = "Policy directory (default: the vault's policies/ with --vault, else the shipped ones)."
_DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        metavar="DIR",
        help=_DIR_HELP,
        show_default=False,
    ),
]

_MAX_JSON_FILE = 16 << 20


def _policy_directory(state: CliState, directory: Path | None) -> Path:
    """The directory given, else the vault's own copy (with --vault), else the defaults."""
    from pcii_vault.policy.engine import default_policy_directory

    if directory is not None:
        return directory
    if state.server is not None:
        # The server's policies are on its machine; the shipped ones are not them.
        state.output.note(
            f"note: the policies of {state.server} are on the server's machine, not read "
            "from here: reading the shipped defaults; give DIR (or --dir) to read others"
        )
    elif state.vault is not None:
        if (state.vault / "policies").is_dir():
            return state.vault / "policies"
        # A mistyped --vault (or a vault whose policies/ is gone) must not read as
        # "your policies are fine" with nothing said: the shipped ones are read, and named.
        state.output.note(
            f"note: {state.vault} holds no policies/ directory (no vault there yet?): "
            "reading the shipped defaults; give DIR (or --dir) to read others"
        )
    return default_policy_directory()


def _state(ctx: typer.Context) -> CliState:
    state = ctx.obj
    if not isinstance(state, CliState):  # pragma: no cover - the root callback sets it
        state = CliState()
        ctx.obj = state
    return state


@app.command("check")
def check(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            parser=path_argument,
            help=_DIR_HELP,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Parse the policies and validate them against the schema; list every problem."""
    from pcii_vault.policy.engine import PolicyEngine, PolicyLoadError

    state = _state(ctx)
    directory = _policy_directory(state, directory)
    try:
        engine = PolicyEngine.load(directory)
    except PolicyLoadError as exc:
        problems = [{"file": p.file, "line": p.line, "message": p.message} for p in exc.problems]
        if state.output.json_mode:
            # One JSON object, as for any error: its `error` and `exit_code` included.
            state.output.result(
                {
                    "ok": False,
                    "directory": str(directory),
                    "problems": problems,
                    "error": (
                        str(exc.problems[0])
                        if len(problems) == 1
                        else f"{len(problems)} problems in {directory}"
                    ),
                    "exit_code": exc.exit_code,
                }
            )
        else:
            # As a submission's: one line, or a summary line and one line per problem.
            from pcii_vault.text import printable

            shown = [printable(str(problem)) for problem in exc.problems]
            if len(shown) == 1:  # one problem: one line, as every other error
                lines = [f"pcii: error: {shown[0]}"]
            else:
                lines = [f"pcii: error: {len(shown)} problems in {directory}"]
                lines += [f"  {problem}" for problem in shown]
            sys.stderr.write("\n".join(lines) + "\n")
        raise typer.Exit(code=exc.exit_code) from None
    files = sorted({source.file for source in engine.policies.values()})
    state.output.result(
        {
            "ok": True,
            "directory": str(directory),
            "files": files,
            "policies": len(engine.policies),
            "policy_set_hash": engine.policy_set_hash,
        },
        human=(
            f"ok: {len(engine.policies)} policies in {len(files)} files, "
            f"policy set sha256 {engine.policy_set_hash}"
        ),
    )


@app.command("test")
def test(
    ctx: typer.Context,
    cases_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE",
            parser=path_argument,
            help="Case file (default: every tests/*.json of the policy directory).",
            show_default=False,
        ),
    ] = None,
    directory: _DirOption = None,
) -> None:
    """Run declarative policy cases; exit 2 if any case fails."""
    from pcii_vault.policy.cases import load_case_file, run_cases
    from pcii_vault.policy.engine import PolicyEngine

    state = _state(ctx)
    directory = _policy_directory(state, directory)
    engine = PolicyEngine.load(directory)
    files = [cases_file] if cases_file else sorted((directory / "tests").glob("*.json"))
    if not files:
        raise InputError(f"no case files in {directory / 'tests'}")
    rows: list[dict[str, Any]] = []
    for path in files:
        rows.extend(
            {
                "file": path.name,
                "case": result.case.name,
                "result": "pass" if result.passed else "FAIL",
                "decision": result.decision.decision,
                "policies": list(result.decision.policy_ids),
                "obligations": list(result.decision.obligations),
                "mismatch": result.mismatch,
            }
            for result in run_cases(engine, load_case_file(path))
        )
    failed = sum(1 for row in rows if row["result"] != "pass")
    if state.output.json_mode:
        state.output.result(
            {
                "passed": len(rows) - failed,
                "failed": failed,
                "policy_set_hash": engine.policy_set_hash,
                "cases": rows,
            }
        )
    else:
        for row in rows:
            line = f"{row['result']:4}  {row['case']}  ({row['decision']})"
            if row["mismatch"]:
                line += f"  -- {row['mismatch']}"
            state.output.console.print(line, markup=False)
        state.output.note(f"{len(rows) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(code=2)


def _determining(engine: PolicyEngine, policy_id: str) -> dict[str, Any]:
    """A determining policy as explain shows it; the vault's own rule when no file has it."""
    source = engine.policies.get(policy_id)
    if source is None:  # INACTIVE_PRINCIPAL_RULE, with principal-status.cedar removed
        return {
            "id": policy_id,
            "effect": "forbid",
            "source": "the vault itself",
            "rule": "only an active principal acts, whatever the policies permit",
            "obligations": [],
        }
    return {
        "id": policy_id,
        "effect": source.effect,
        "source": f"{source.file}:{source.line}",
        "rule": source.comment,
        "obligations": [o.value for o in source.obligations],
    }


def _check_action(engine: PolicyEngine, action: str) -> None:
    """Refuse an action the schema does not declare: a typo would read as a denial.

    Raises:
        InputError: `action` is not one of the schema's actions (with the closest one).
    """
    from pcii_vault.cli.params import suggest
    from pcii_vault.policy.engine import _action_ancestors

    # The schema's actions, without the groups they are in (no request names a group).
    ancestors = _action_ancestors(engine._schema)
    groups = set().union(*ancestors.values())
    known = sorted(set(ancestors) - groups)
    if action not in known:
        hint = suggest(action, known) or f"; one of: {', '.join(known)}"
        raise InputError(f"--action {action!r} is not an action of the policy schema{hint}")


def _parse_json_option(name: str, value: str | None) -> dict[str, Any] | None:
    from pcii_vault.crypto.canonical import parse_json_object

    if value is None:
        return None
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = read_bounded(Path(value), _MAX_JSON_FILE).decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{name}: {value} is not UTF-8 text") from None
        except FileNotFoundError:
            if value.lstrip().startswith(("[", '"')) or value.strip() in {"null", "true", "false"}:
                # JSON, but no object, and no file of that name either.
                raise InputError(
                    f"{name}: give a JSON object ({{...}}) or a file holding one"
                ) from None
            raise InputError(f"{name}: cannot read {value}: no such file") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot read {value}: {exc.strerror}") from None
        if len(text) > _MAX_JSON_FILE:
            raise InputError(f"{name}: {value} is larger than 16 MiB")
    return parse_json_object(text.encode("utf-8"), name)


def _days_after(moment: datetime, days: int, instead: str) -> datetime:
    """`moment` moved by `days`, for the default principal's training and NDA dates.

    The default principal is trained for a year after `--now` and signed its NDA 30 days
    before it; a `--now` at the calendar's very end or start (9999-12-31, 0001-01-01) has
    no such date, which raised OverflowError (exit 1) instead of saying so.

    Raises:
        InputError: the date falls outside the calendar.
    """
    try:
        return moment + timedelta(days=days)
    except OverflowError:
        if days > 0:
            edge, which, fix = "end", "training runs until a year after it", "an earlier"
        else:
            edge, which, fix = "start", "NDA was signed 30 days before it", "a later"
        raise InputError(
            f"--now {moment.isoformat()} is too close to the {edge} of the calendar for the "
            f"default principal, whose {which}: give {instead} or --principal-json, or {fix} "
            "--now"
        ) from None


@app.command("explain")
def explain(
    ctx: typer.Context,
    *,
    action: Annotated[
        str,
        typer.Option("--action", metavar="ACTION", help="Action, e.g. retrieve, read-log."),
    ],
    principal_json: Annotated[
        str | None,
        typer.Option(
            "--principal-json",
            metavar="JSON|FILE",
            help="Principal attributes (JSON text or file); overrides the options below.",
            show_default=False,
        ),
    ] = None,
    record_json: Annotated[
        str | None,
        typer.Option(
            "--record-json",
            metavar="JSON|FILE",
            help="Record attributes (JSON text or file).",
            show_default=False,
        ),
    ] = None,
    role: Annotated[
        str, typer.Option("--role", metavar="ROLE", help="Principal role.")
    ] = "analyst",
    level: Annotated[
        str, typer.Option("--level", metavar="LEVEL", help="Government level.")
    ] = "federal",
    org: Annotated[
        str, typer.Option("--org", metavar="ORG", help="Principal organisation.")
    ] = "DHS CISA",
    sector: Annotated[
        list[str] | None,
        typer.Option(
            "--sector",
            metavar="SECTOR",
            help="Need-to-know sector (repeatable; default: Energy).",
            show_default=False,
        ),
    ] = None,
    no_sectors: Annotated[
        bool, typer.Option("--no-sectors", help="Principal has no sector of need to know.")
    ] = False,
    contractor: Annotated[
        bool, typer.Option("--contractor", help="Principal is a contractor.")
    ] = False,
    status: Annotated[
        str, typer.Option("--status", metavar="STATUS", help="Principal status.")
    ] = "active",
    untrained: Annotated[bool, typer.Option("--untrained", help="No current training.")] = False,
    no_nda: Annotated[bool, typer.Option("--no-nda", help="No signed NDA.")] = False,
    state: Annotated[
        str, typer.Option("--state", metavar="STATE", help="Record state.")
    ] = "validated",
    record_sector: Annotated[
        str, typer.Option("--record-sector", metavar="SECTOR", help="Record sector.")
    ] = "Energy",
    submitter_org: Annotated[
        str, typer.Option("--submitter-org", metavar="ORG", help="Submitter organisation.")
    ] = "Acme Power",
    tlp: Annotated[
        str, typer.Option("--tlp", metavar="TLP", help="The record's Traffic Light Protocol label.")
    ] = "TLP:AMBER",
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Action on the vault itself.")
    ] = False,
    purpose: Annotated[
        str,
        typer.Option("--purpose", metavar="TEXT", help="Stated purpose (as `pcii get --purpose`)."),
    ] = "stated purpose",
    use: Annotated[
        str,
        typer.Option("--use", metavar="USE", help="Intended use (same default as `pcii get`)."),
    ] = DEFAULT_USE,
    authority: Annotated[
        str | None,
        typer.Option(
            "--authority",
            metavar="EXCEPTION",
            help="Disclosure exception (as `pcii get --authority`).",
            show_default=False,
        ),
    ] = None,
    emergency: Annotated[bool, typer.Option("--emergency", help="Emergency request.")] = False,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            metavar="TIME",
            help="Request time, ISO 8601 with a time zone (default: now).",
            show_default=False,
        ),
    ] = None,
    directory: _DirOption = None,
) -> None:
    """Decide one request and show which policies determined it, and why."""
    from pcii_vault.policy.cases import CaseRequest
    from pcii_vault.policy.engine import PolicyEngine

    cli = _state(ctx)
    # Cedar would fail on undecodable text, and the answer be an evaluation error's deny.
    texts = [
        ("--action", action),
        ("--role", role),
        ("--level", level),
        ("--org", org),
        ("--status", status),
        ("--state", state),
        ("--record-sector", record_sector),
        ("--submitter-org", submitter_org),
        ("--tlp", tlp),
        ("--purpose", purpose),
        ("--use", use),
        ("--authority", authority or ""),
        ("--principal-json", principal_json or ""),
        ("--record-json", record_json or ""),
        *(("--sector", name) for name in sector or []),
    ]
    for option, text in texts:
        refuse_undecodable(option, text)
    engine = PolicyEngine.load(_policy_directory(cli, directory))
    _check_action(engine, action)
    moment = datetime.now(UTC) if now is None else aware_time(now, "--now")
    principal = _parse_json_option("--principal-json", principal_json) or {
        "id": "explain-principal",
        "role": role,
        "organisation": org,
        "level": level,
        "sectors": [] if no_sectors else (sector if sector is not None else ["Energy"]),
        "training_expires": None if untrained else _days_after(moment, 365, "--untrained"),
        "nda_signed": None if no_nda else _days_after(moment, -30, "--no-nda").date(),
        "contractor": contractor,
        "status": status,
    }
    record: dict[str, Any] | None = None
    if not no_record:
        record = _parse_json_option("--record-json", record_json) or {
            "state": state,
            "sector": record_sector,
            "submitter_org": submitter_org,
            "tlp": tlp,
        }
    request = CaseRequest.from_attributes(
        principal,
        action,
        record,
        {
            "purpose": purpose,
            "use": use,
            "authority": authority,
            "emergency": emergency,
            "now": moment,
        },
    )
    decision = engine.decide(request.principal, request.action, request.record, request.context)
    determining = [_determining(engine, policy_id) for policy_id in decision.policy_ids]
    if decision.allowed:
        why = "permitted by the permit policies below; no forbid applies"
    elif decision.errors:
        why = "denied: evaluation failed (any error denies)"
    elif determining:
        why = "denied by the forbid policies below (forbid overrides permit)"
    else:
        from pcii_vault.policy.denial import denial_reason

        # The same reason the vault gives with its denial (the role, the record's state).
        reason = denial_reason(
            engine,
            request.principal,
            action=request.action,
            record=request.record,
            context=request.context,
            decision=decision,
        )
        why = f"denied by default: no permit policy applies to this request ({reason})"
    data = {
        "decision": decision.decision,
        "why": why,
        "policies": determining,
        "obligations": list(decision.obligations),
        "errors": list(decision.errors),
        "policy_set_hash": decision.policy_set_hash,
    }
    if cli.output.json_mode:
        cli.output.result(data)
        return
    lines = [f"decision: {decision.decision}", f"why: {why}"]
    for item in determining:
        lines.append(f"  {item['effect']} {item['id']}  ({item['source']})")
        if item["rule"]:
            lines.append(f"    {item['rule']}")
    if decision.obligations:
        lines.append("obligations: " + " ".join(decision.obligations))
    lines.extend(f"error: {error}" for error in decision.errors)
    lines.append(f"policy set sha256: {decision.policy_set_hash}")
    cli.output.result(data, human="\n".join(lines))

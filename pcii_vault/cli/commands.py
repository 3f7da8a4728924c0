"""Where every audience's commands join the root app."""

from __future__ import annotations

import typer

from pcii_vault.cli import (
    admin,
    analyst,
    audit,
    auditor,
    keys,
    maintenance,
    office,
    owner,
    policy,
    report,
    serve,
    submission,
)
from pcii_vault.cli.help import CliTyper

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach each audience's sub-app or commands to the root `app`."""
    # admin
    app.command("init")(admin.init)
    app.add_typer(admin.principal_app, name="principal")
    app.add_typer(admin.store_app, name="store")
    app.add_typer(admin.index_app, name="index")
    app.add_typer(keys.app, name="keys")
    app.command("maintenance")(maintenance.maintenance)
    app.command("serve")(serve.serve)
    app.command("unseal")(serve.unseal)
    # owner
    app.command("submit")(owner.submit)
    app.command("status")(owner.status)
    app.command("withdraw")(owner.withdraw)
    app.add_typer(owner.receipt_app, name="receipt")
    # program office
    app.command("review")(office.review)
    app.command("validate")(office.validate)
    app.command("reject")(office.reject)
    app.command("deficient")(office.deficient)
    app.command("decontrol")(office.decontrol)
    app.command("destroy")(office.destroy)
    app.add_typer(office.app, name="office")
    app.add_typer(submission.app, name="submission")
    schema_app = CliTyper(
        rich_markup_mode=None, help="JSON Schemas of the vault's documents.", no_args_is_help=True
    )
    schema_app.command("submission")(submission.schema_command)
    app.add_typer(schema_app, name="schema")
    # analyst
    app.command("get")(analyst.get)
    app.command("search")(analyst.search)
    # auditor
    audit.app.command("recipients")(auditor.recipients)
    audit.app.command("report")(report.report)
    audit.app.command("checkpoint")(auditor.checkpoint)
    app.add_typer(audit.app, name="audit")
    # policy authors and admins
    app.add_typer(policy.app, name="policy")

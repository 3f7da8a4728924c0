"""Plain, conventional help for every `pcii` command.

Invariants: help is plain text, never Rich markup (`s3://BUCKET[/PREFIX]` is text);
arguments read as their upper-case placeholder in the usage line and the help
(`TRACKING`, `[FILE]`), not as `{tracking}` or `<str>`; `-h` is `--help` everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer import _click
from typer.core import TyperCommand

__all__ = ["CliTyper", "PlainCommand"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _placeholder(param: _click.Parameter) -> str:
    name = param.metavar or (param.name or "").upper()
    return f"{name}..." if param.nargs != 1 else name


class PlainCommand(TyperCommand):
    """A command whose usage line and argument list use upper-case placeholders."""

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        """`[OPTIONS] TRACKING [FILE]`: required arguments bare, optional in brackets."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _placeholder(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """The arguments (placeholder, help) and then the options, each with its help."""
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                if not getattr(param, "hidden", False):
                    arguments.append((_placeholder(param), getattr(param, "help", None) or ""))
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                options.append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


class CliTyper(typer.Typer):
    """`typer.Typer` with plain help and `PlainCommand` commands by default."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 -- typer's own keywords
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("no_args_is_help", True)
        super().__init__(**kwargs)

    def command(
        self,
        name: str | None = None,
        *,
        cls: type[TyperCommand] | None = None,
        **kwargs: Any,  # noqa: ANN401 -- typer's own keywords
    ) -> Callable[[_F], _F]:
        """Register a command; a `PlainCommand` unless `cls` says otherwise."""
        return super().command(name, cls=cls or PlainCommand, **kwargs)

"""The shared typer application every command module registers on."""

import os
from typing import Any, Dict, List

import click
import srsly
import typer

from ..about import __version__

VERBOSE_ENV = "KNOWFREE_VERBOSE"
#: ``context_settings`` of a command that reads config overrides
#: (``--vars.endpoint URL``) from its extra arguments, as ``spacy train`` does.
OVERRIDES_CONTEXT: Dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}
_state = {"verbose": False}

app = typer.Typer(
    name="knowfree",
    help="spacy-knowfree: data conversion, sampling, augmentation and analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command_group(name: str, help: str) -> typer.Typer:
    """A group of subcommands, ``knowfree NAME ...``, registered on :data:`app`;
    without a subcommand it prints its help."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def set_verbose(on: bool) -> None:
    """Show (or hide) the traceback of an error."""
    _state["verbose"] = bool(on)


def verbose_errors() -> bool:
    """Whether errors show their traceback: ``--verbose`` or ``KNOWFREE_VERBOSE=1``."""
    return _state["verbose"] or os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _print_version(value: bool) -> None:
    """``knowfree --version``: print the package version and exit."""
    if value:
        typer.echo(f"spacy-knowfree {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help=f"On an error, also print the traceback (anywhere on the command line; or set {VERBOSE_ENV}=1).",
    ),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version of spacy-knowfree and exit."
    ),
) -> None:
    """spacy-knowfree: data conversion, sampling, augmentation and analysis."""
    if verbose:
        set_verbose(True)


def parse_config_overrides(args: List[str]) -> Dict[str, Any]:
    """Config overrides from the extra arguments of a command, as ``spacy train``
    reads them: ``--section.setting value``, ``--section.setting=value`` or a
    bare ``--section.setting`` (true). Values are read as JSON where they parse
    (numbers, booleans, lists), else kept as strings.

    args (List[str]): the extra arguments (``ctx.args``).
    RETURNS (Dict[str, Any]): dotted setting name -> value; raises
        ``click.NoSuchOption`` for an argument that is not a dotted ``--`` option.
    """
    overrides: Dict[str, Any] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name = arg[2:] if arg.startswith("--") else ""
        if "=" in name:
            name, value = name.split("=", 1)
        elif rest and not rest[0].startswith("--"):
            value = rest.pop(0)
        else:
            value = "true"
        if "." not in name:  # settings have a section: --vars.endpoint URL
            raise click.NoSuchOption(arg)
        overrides[name.replace("-", "_") if "=" in arg else name] = _override_value(value)
    return overrides


def _override_value(value: str) -> Any:
    """A command-line value as JSON where it parses, else the string itself."""
    try:
        return srsly.json_loads(value)
    except ValueError:
        return value

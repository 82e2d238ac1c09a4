"""The shared typer application every command module registers on."""
import os

import typer

from ..about import __version__

VERBOSE_ENV = "KNOWFREE_VERBOSE"
_state = {"verbose": False}

app = typer.Typer(
    name="knowfree",
    help="spacy-knowfree: data conversion, sampling, augmentation and analysis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
        False, "--verbose",
        help=f"On an error, also print the traceback (anywhere on the command line; or set {VERBOSE_ENV}=1)."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version,
        help="Print the version of spacy-knowfree and exit."),
) -> None:
    """spacy-knowfree: data conversion, sampling, augmentation and analysis."""
    if verbose:
        set_verbose(True)

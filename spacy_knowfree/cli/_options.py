"""Arguments and options that several commands share: files and folders that
must exist, files to write, and the knowledge-pipeline options."""

from typing import Any

import typer


def existing_file_option(*names: str, help: str) -> Any:
    """An option naming an existing file (not a directory), default None."""
    return typer.Option(None, *names, exists=True, dir_okay=False, help=help)


def config_option(help: str) -> Any:
    """The ``--config``/``-c`` option of a command: an existing config file, default None."""
    return existing_file_option("--config", "-c", help=help)


def existing_file_argument(help: str) -> Any:
    """A required argument naming an existing file (not a directory)."""
    return typer.Argument(..., exists=True, dir_okay=False, help=help)


def existing_dir_argument(help: str) -> Any:
    """A required argument naming an existing directory, such as a trained pipeline."""
    return typer.Argument(..., exists=True, file_okay=False, help=help)


def output_file_argument(help: str) -> Any:
    """A required argument naming the file to write (not a directory)."""
    return typer.Argument(..., dir_okay=False, help=help)


def families_option(help: str = "Lexicon families (repeatable).") -> Any:
    """The ``--family`` option of the knowledge pipeline: SEG, POS and ENT by default."""
    return typer.Option(["SEG", "POS", "ENT"], "--family", help=help)


def user_dict_option() -> Any:
    """The ``--user-dict`` option of the knowledge pipeline's jieba lexicon."""
    return existing_file_option("--user-dict", help="Lexicon: jieba user dictionary.")

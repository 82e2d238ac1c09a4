"""Every help text of the ``knowfree`` command line reaches the user whole.

Typer renders help with Rich markup, which silently drops a bracketed word it
takes for a style tag ("[ray]", "[components.NAME]"). A literal bracket must be
written ``\\[``.
"""

import typer
from rich.text import Text

from spacy_knowfree.cli import app


def _help_texts(command, path: str):
    """(where, text) of a command, its options and its subcommands (typer vendors click: duck-typed)."""
    yield path, command.help or ""
    for param in command.params:
        yield f"{path} {param.name}", getattr(param, "help", None) or ""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _help_texts(sub, f"{path} {name}")


def test_no_help_text_loses_words_to_rich_markup():
    texts = list(_help_texts(typer.main.get_command(app), "knowfree"))
    assert len(texts) > 50  # every command and option was walked
    lost = [(where, text) for where, text in texts if Text.from_markup(text).plain != text.replace("\\[", "[")]
    assert not lost, lost

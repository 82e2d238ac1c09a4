"""The shared typer application every command module registers on."""
import typer

app = typer.Typer(
    name="knowfree",
    help="spacy-knowfree: data conversion, sampling, augmentation and analysis.",
    no_args_is_help=True,
    add_completion=False,
)

"""The ``knowfree`` command line (``python -m spacy_knowfree`` or ``knowfree``)."""
from ._app import app


def main() -> None:
    """Console-script entry point: register every command module, then run."""
    _register_commands()
    app()


def _register_commands() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["app", "main"]

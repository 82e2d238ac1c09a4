"""The ``knowfree`` command line (``python -m spacy_knowfree`` or ``knowfree``).

Only the module of the command being run is imported, so the commands of the
base install work without the optional extras; a command whose module needs a
missing extra is replaced by a stub that says which extra to install (KF600).
Every error is printed as its KF message alone; ``--verbose`` (anywhere on the
command line) or ``KNOWFREE_VERBOSE=1`` also prints the traceback.
"""
import importlib
import pkgutil
import sys
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

import typer
from wasabi import msg

from ..errors import Errors
from ._app import app, set_verbose, verbose_errors

# command name -> module of spacy_knowfree.cli that registers it
COMMAND_MODULES: Dict[str, str] = {
    "convert": "convert",
    "convert-benchmark": "convert",
    "to-jsonl": "convert",
    "sample": "sample",
    "filter-extension": "filter_extension",
    "report": "report",
    "tune-threshold": "tune_threshold",
    "extend": "extend",
    "merge-labels": "merge_labels",
    "synthesize": "synthesize",
    "augment": "augment",
    "analyze": "analyze",
    "init": "init_config",
}
# top-level module -> the extra of spacy-knowfree that installs it
EXTRA_OF_MODULE: Dict[str, str] = {
    "spacy_llm": "llm",
    "sentence_transformers": "llm",
    "transformers": "llm",
    "gguf": "llm",
    "accelerate": "llm",
    "jieba": "lexicon",
    "spacy_transformers": "transformers",
    "matplotlib": "analysis",
    "sklearn": "analysis",
}
_registered: Dict[str, bool] = {}


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point: register the command to run, then run it,
    printing any error as its KF message (exit code 1, 130 on Ctrl-C)."""
    argv, verbose = _pop_verbose(sys.argv[1:] if args is None else args)
    if verbose:
        set_verbose(True)
    command = _command_name(argv)
    try:
        _register_commands(command)
        app(args=argv, prog_name="knowfree")
    except KeyboardInterrupt:
        _print_error(Errors.KF602.format(command=command or ""))
        sys.exit(130)
    except Exception as err:
        if getattr(err, "knowfree_reported", False):  # the command printed its KF message
            if verbose_errors():
                traceback.print_exc()
            else:
                msg.text("Rerun with --verbose (or KNOWFREE_VERBOSE=1) to see the traceback.")
        else:
            _print_error(error_message(err, command))
        sys.exit(1)


def error_message(err: BaseException, command: Optional[str] = None) -> str:
    """The KF message of an error: its own when it has one, else KF601."""
    text = str(err).strip()
    if text.startswith("[KF"):
        return text
    if not text:
        text = type(err).__name__
    elif not isinstance(err, (ValueError, OSError)):
        text = f"{type(err).__name__}: {text}"
    return Errors.KF601.format(command=command or "", error=text)


def _print_error(message: str) -> None:
    if verbose_errors():
        traceback.print_exc()
    msg.fail(message)


def _pop_verbose(args: Sequence[str]) -> Tuple[List[str], bool]:
    """Remove ``--verbose`` (before a ``--``) from the arguments."""
    out: List[str] = []
    verbose = False
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        if arg == "--verbose":
            verbose = True
        else:
            out.append(arg)
    return out, verbose


def _command_name(args: Sequence[str]) -> Optional[str]:
    """The first argument that is not an option: the command to run."""
    return next((arg for arg in args if not arg.startswith("-")), None)


def _register_commands(command: Optional[str] = None) -> None:
    """Import the module of ``command`` (every command module when None or
    unknown), which registers its commands on ``app``."""
    module = COMMAND_MODULES.get(command or "")
    if module is not None:
        _import_command_module(module)
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            _import_command_module(info.name)


def _import_command_module(module: str) -> None:
    if module in _registered:
        return
    try:
        importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in EXTRA_OF_MODULE:
            raise
        names = [name for name, mod in COMMAND_MODULES.items() if mod == module] or [module.replace("_", "-")]
        for name in names:
            _add_stub(name, EXTRA_OF_MODULE[missing], missing)
    _registered[module] = True


def _add_stub(name: str, extra: str, missing: str) -> None:
    """Register ``name`` as a command that only says which extra it needs."""
    message = Errors.KF600.format(command=name, extra=extra, module=missing)

    def stub(ctx: typer.Context) -> None:
        msg.fail(message, exits=1)

    stub.__doc__ = f"(not available: needs the '{extra}' extra of spacy-knowfree)"
    app.command(
        name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    )(stub)


__all__ = ["app", "error_message", "main"]

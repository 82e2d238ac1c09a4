"""The ``knowfree`` command line (``python -m spacy_knowfree`` or ``knowfree``).

Importing this package imports every command module, each of which
registers its commands on :data:`app`. The commands of the base install
import their optional libraries only when they run; a command module that
needs a missing extra at import time (``augment`` and ``synthesize`` need
spacy-llm) is replaced by a command that says which extra to install (KF600).
Every error is printed as its KF message alone; ``--verbose`` (anywhere on the
command line) or ``KNOWFREE_VERBOSE=1`` also prints the traceback.
"""

import contextlib
import importlib
import os
import sys
import traceback
from typing import Dict, List, NoReturn, Optional, Sequence, Tuple

import typer
from wasabi import msg

from ..errors import Errors
from ._app import OVERRIDES_CONTEXT, app, set_verbose, verbose_errors

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
# command modules that need an optional extra at import time -> their command names
OPTIONAL_COMMAND_MODULES: Dict[str, List[str]] = {
    "augment": ["augment"],
    "synthesize": ["synthesize"],
}


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point: run the command in ``args`` (default: sys.argv),
    printing any error as its KF message (exit code 1, 130 on Ctrl-C).

    Run as the process's own command line (``args`` None), an interrupted
    command leaves at once (:func:`_leave_interrupted`); called with ``args``
    (from Python), it raises ``SystemExit(130)`` as any command would."""
    argv, verbose = _pop_verbose(sys.argv[1:] if args is None else args)
    if verbose:
        set_verbose(True)
    command = _command_name(argv)
    try:
        app(args=argv, prog_name="knowfree")
    except SystemExit as done:
        if done.code == 130 and args is None:
            _leave_interrupted()
        raise
    except KeyboardInterrupt:
        _print_error(Errors.KF602.format(command=command or ""))
        if args is None:
            _leave_interrupted()
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
    missing = (getattr(err, "name", None) or "").split(".")[0] if isinstance(err, ModuleNotFoundError) else ""
    if missing in EXTRA_OF_MODULE:
        return Errors.KF600.format(command=command or "", extra=EXTRA_OF_MODULE[missing], module=missing)
    if text.startswith("[KF"):
        return text
    if not text:
        text = type(err).__name__
    elif not isinstance(err, (ValueError, OSError)):
        text = f"{type(err).__name__}: {text}"
    return Errors.KF601.format(command=command or "", error=text)


def _leave_interrupted() -> NoReturn:
    """Exit with 130 now, without the interpreter's shutdown. After Ctrl-C the
    LLM backends abandon the worker threads still waiting on a server (daemon
    threads); a shutdown that meets one of them holding a lock (a progress
    bar's, a log handler's) would wait forever. Everything the command keeps
    is already on disk when it reports the stop: each cached reply is written
    with its own ``os.write``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


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


def _import_optional_command_module(module: str) -> None:
    """Import a command module that needs an optional extra; without the
    extra, register its commands as ones that say which extra to install."""
    try:
        importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in EXTRA_OF_MODULE:
            raise
        for name in OPTIONAL_COMMAND_MODULES[module]:
            _add_stub(name, EXTRA_OF_MODULE[missing], missing)


def _add_stub(name: str, extra: str, missing: str) -> None:
    """Register ``name`` as a command that only says which extra it needs."""
    message = Errors.KF600.format(command=name, extra=extra, module=missing)

    def stub(ctx: typer.Context) -> None:
        msg.fail(message, exits=1)

    stub.__doc__ = f"(not available: needs the '{extra}' extra of spacy-knowfree)"
    app.command(name, context_settings={**OVERRIDES_CONTEXT, "help_option_names": []})(stub)


# Every command module registers its commands on ``app`` when imported.
from . import (  # noqa: E402,F401
    analyze,
    apply,
    convert,
    extend,
    filter_extension,
    init_config,
    merge_labels,
    pseudo_label,
    quantize,
    report,
    sample,
    tune_threshold,
)

for _module in OPTIONAL_COMMAND_MODULES:
    _import_optional_command_module(_module)

__all__ = ["app", "error_message", "main"]

"""Running the ``knowfree`` command line in-process, as a user sees it (for CLI tests)."""

from typing import Iterator, Tuple

import pytest

from spacy_knowfree.cli import _app, main

BOM = "\ufeff"
BINARY = bytes(range(256)) * 4  # never valid UTF-8, JSON or a DocBin


@pytest.fixture(autouse=True)
def quiet(monkeypatch) -> Iterator[None]:
    """Errors without tracebacks unless a test asks for one (import it into a
    test module to apply it there)."""
    monkeypatch.delenv(_app.VERBOSE_ENV, raising=False)
    _app.set_verbose(False)
    yield
    _app.set_verbose(False)


def run(capsys, *args) -> Tuple[int, str]:
    """Run ``knowfree ARGS`` in-process. RETURNS (exit code, stdout + stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out.out + out.err

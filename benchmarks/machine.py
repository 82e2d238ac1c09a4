"""What every benchmark table states at its top: the processor and the versions."""

import platform
from pathlib import Path


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    """spacy-knowfree, spaCy, thinc, torch and Python versions, in one line."""
    import spacy
    import thinc
    import torch

    import spacy_knowfree

    return (
        f"spacy-knowfree {spacy_knowfree.__version__}, spaCy {spacy.__version__}, "
        f"thinc {thinc.__version__}, torch {torch.__version__}, Python {platform.python_version()}"
    )

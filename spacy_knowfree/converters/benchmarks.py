"""The project's benchmark splits of the public data in ``shared/datasets``.

``read_benchmark("weibo", "train", datasets_dir)`` reads one split with the
right reader and options; MSR and PKU are split by line range of their gold
test files (see :data:`.sighan.SIGHAN_SPLITS` and the datasets README).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..errors import Errors
from .conll import read_conll
from .conllu import read_conllu
from .docs import TARGET_SPANS_KEY, PathLike, ReadStats
from .sighan import SIGHAN_SPLITS, read_sighan


@dataclass(frozen=True)
class Benchmark:
    """One data set: its reader, reader options and split files
    (``split -> path relative to the datasets dir``)."""

    task: str
    format: str
    files: Dict[str, str]
    options: Dict[str, Any] = field(default_factory=dict)
    lines: Dict[str, Tuple[int, int]] = field(default_factory=dict)


BENCHMARKS: Dict[str, Benchmark] = {
    "weibo": Benchmark(
        "ner",
        "conll",
        {s: f"weibo/weiboNER_2nd_conll.{s}" for s in ("train", "dev", "test")},
        {"sep": "\t", "scheme": "bio", "token_format": "char-index"},
    ),
    "resume": Benchmark(
        "ner",
        "conll",
        {s: f"resume/{s}.char.bmes" for s in ("train", "dev", "test")},
        {"sep": " ", "scheme": "bmes"},
    ),
    "msr": Benchmark(
        "cws",
        "sighan",
        {s: "msr/msr_test_gold.utf8" for s in SIGHAN_SPLITS["msr"]},
        lines=SIGHAN_SPLITS["msr"],
    ),
    "pku": Benchmark(
        "cws",
        "sighan",
        {s: "pku/pku_test_gold.utf8" for s in SIGHAN_SPLITS["pku"]},
        lines=SIGHAN_SPLITS["pku"],
    ),
    "ud_zh": Benchmark(
        "pos",
        "conllu",
        {s: f"ud_zh/gsd_v1.4/zh-ud-{s}.conllu" for s in ("train", "dev", "test")},
    ),
    "ud_zh_v2": Benchmark(
        "pos",
        "conllu",
        {s: f"ud_zh/gsdsimp_v2/zh_gsdsimp-ud-{s}.conllu" for s in ("dev", "test")},
    ),
}


def benchmark_path(name: str, split: str, datasets_dir: PathLike) -> Path:
    """The file holding ``split`` of benchmark ``name`` under ``datasets_dir``."""
    bench = BENCHMARKS.get(name)
    if bench is None or split not in bench.files:
        options = {n: sorted(b.files) for n, b in BENCHMARKS.items()}
        raise ValueError(Errors.KF120.format(name=name, split=split, options=options))
    return Path(datasets_dir) / bench.files[split]


def read_benchmark(
    name: str,
    split: str,
    datasets_dir: PathLike,
    vocab: Optional[Vocab] = None,
    *,
    spans_key: str = TARGET_SPANS_KEY,
    set_ents: bool = True,
    stats: Optional[ReadStats] = None,
    warn: bool = True,
) -> List[Doc]:
    """Read one split of a benchmark (``weibo``, ``resume``, ``msr``, ``pku``,
    ``ud_zh`` = GSD v1.4, ``ud_zh_v2`` = GSDSimp v2.16 dev/test).

    split (str): ``"train"``, ``"dev"`` or ``"test"`` (MSR/PKU ``"train"`` is
        the training pool cut from the gold test file).
    datasets_dir (PathLike): the ``shared/datasets`` folder.
    RETURNS (List[Doc]): character-tokenized Docs with spans under ``spans_key``.
    """
    path = benchmark_path(name, split, datasets_dir)
    bench = BENCHMARKS[name]
    common: Dict[str, Any] = {"spans_key": spans_key, "set_ents": set_ents, "stats": stats}
    if bench.format == "conll":
        return read_conll(path, vocab, warn=warn, **bench.options, **common)
    if bench.format == "sighan":
        return read_sighan(path, vocab, lines=bench.lines[split], **common)
    return read_conllu(path, vocab, **bench.options, **common)

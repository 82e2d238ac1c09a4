"""The unlabeled text of a benchmark cell, for the systems that learn from it (issue 18).

A cell's unlabeled text is its training pool minus the K-shot subset, gold
removed (``unlabeled_K.jsonl``, written by ``accuracy.prepare_corpus``): never
dev or test text. Two systems of ``benchmarks/accuracy.py`` use it beside
``+pretrain``:

* ``knowfree+lexicon+unlabeled`` (knowledge fusion on unlabeled text): the
  lexicon's extension spans on every unlabeled doc (``knowfree extend
  --unlabeled``), trained beside the K fusion samples; the component keeps
  the docs' target columns out of the loss.
* ``knowfree+lexicon+selftrain`` (one round of self-training): the
  ``knowfree+lexicon`` run of the same seed is the teacher; ``knowfree
  pseudo-label`` keeps its spans above ``--min-confidence`` on the unlabeled
  docs, adds the lexicon's extension spans and flags the docs synthetic
  (weight β); the student trains on the K fusion samples plus those docs.

Every step goes through the ``knowfree`` CLI, as a user would run it, and
writes its file atomically, so an interrupted benchmark resumes.
"""

import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List

from spacy.tokens import DocBin
from spacy.vocab import Vocab

from spacy_knowfree.docbin_io import read_docbin, write_docbin

# runs the benchmark's commands: (command, log file, on_device) -> seconds
Runner = Callable[..., float]
_LOCKS: Dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
# knowfree pseudo-label's default, chosen on dev (results/pseudo_label_threshold.md)
MIN_CONFIDENCE = 0.9


def path_lock(path: Path) -> threading.Lock:
    """One lock per output file: the threads of one benchmark build it once."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path.resolve(), threading.Lock())


def knowfree_cli(run: Runner, args: List[str], output: Path) -> None:
    """``python -m spacy_knowfree ARGS... PARTIAL``, then PARTIAL -> ``output``
    (atomic: a process beside this one sees all or nothing); nothing to do when
    ``output`` exists. Every file a benchmark makes with the CLI goes through it."""
    with path_lock(output):
        if output.exists():
            return
        partial = output.with_name(f"{output.stem}.{os.getpid()}.partial{output.suffix}")
        output.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "spacy_knowfree", *args, str(partial)], output.with_suffix(".log"), on_device=False)
        os.replace(partial, output)


def unlabeled_docs(run: Runner, corpus: Path, k: str) -> Path:
    """``unlabeled_K.spacy``: the cell's unlabeled text as character-token docs."""
    out = corpus / f"unlabeled_{k}.spacy"
    knowfree_cli(run, ["convert", str(corpus / f"unlabeled_{k}.jsonl"), "--format", "text", "--lang", "zh"], out)
    return out


def extended_unlabeled_docs(run: Runner, corpus: Path, k: str) -> Path:
    """``unlabeled_K_extended.spacy``: the unlabeled docs with the lexicon's
    extension spans, flagged ``knowfree_unlabeled``."""
    out = corpus / f"unlabeled_{k}_extended.spacy"
    knowfree_cli(run, ["extend", str(unlabeled_docs(run, corpus, k)), "--unlabeled"], out)
    return out


def pseudo_labeled_docs(run: Runner, teacher: Path, corpus: Path, k: str, out: Path) -> Path:
    """``knowfree pseudo-label`` of the cell's unlabeled docs by ``teacher``."""
    knowfree_cli(
        run,
        [
            "pseudo-label",
            str(teacher),
            str(unlabeled_docs(run, corpus, k)),
            "--min-confidence",
            str(MIN_CONFIDENCE),
            "--summary",
            str(out.with_suffix(".summary.json")),
        ],
        out,
    )
    return out


def combined(parts: List[Path], out: Path) -> Path:
    """One DocBin of every doc of ``parts`` (user data kept), written atomically."""
    with path_lock(out):
        if not out.exists():
            vocab = Vocab()
            partial = out.with_name(f"{out.stem}.{os.getpid()}.partial{out.suffix}")
            write_docbin([doc for part in parts for doc in read_docbin(part, vocab)], partial)
            os.replace(partial, out)
    return out


def describe(path: Path) -> Dict:
    """What a run records of the unlabeled docs it trained on: their count and,
    for pseudo-labels, the spans kept (``knowfree pseudo-label --summary``)."""
    info: Dict = {"docs": len(DocBin().from_disk(path)), "text": "training pool minus the K subset, gold removed"}
    summary = path.with_suffix(".summary.json")
    if summary.exists():
        counts = json.loads(summary.read_text(encoding="utf8"))
        info["pseudo_label"] = {"min_confidence": MIN_CONFIDENCE, "summary": counts}
    return info

"""The classic peer: a linear-chain CRF on character n-gram features (CRFsuite).

What a low-resource Chinese NER or segmentation user tries before a neural
model. It trains on the same DocBins as every other system of the accuracy
benchmark (``benchmarks/accuracy.py --system crf``) and is scored the same
way: exact (start, end, label) span P/R/F of ``doc.spans["sc"]`` on the test
split, with spaCy's ``Scorer.score_spans``.

Features (:mod:`spacy_knowfree.peer.crf_features`, shared with the
``knowfree_crf`` component): per character its type, the unigrams and bigrams
in a ±2 window and the centred trigram.

Labels are BIOES tags of the gold spans. A linear chain holds flat spans
only: on nested data the outermost spans are kept (longest first, then
leftmost; a span overlapping a kept one is dropped) and the number dropped is
recorded as ``trained_on``, while the test score is taken over all gold spans
like every system's.

Training is L-BFGS for ``max_iterations`` iterations; c1 (L1) and c2 (L2) are
picked on the dev split only (grid ``C1_GRID`` × ``C2_GRID``), then the chosen
model is scored once on test. CRFsuite's L-BFGS is deterministic, so one run
per cell stands for its seeds. Needs python-crfsuite (in the base install
since 0.8.0).

    python benchmarks/crf.py --train train.spacy --dev dev.spacy --test test.spacy --output out/
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import spacy
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_knowfree.docbin_io import read_docbin
from spacy_knowfree.peer.crf_features import FEATURES, SpanTuple, bioes_to_spans, gold_spans
from spacy_knowfree.peer.crf_peer import CRFTagger, train_crf_bytes

C1_GRID = (0.0, 0.05, 0.2)
C2_GRID = (0.01, 0.1, 1.0)
MAX_ITERATIONS = 300


def train_crf(
    docs: Sequence[Doc],
    model_path: Path,
    c1: float,
    c2: float,
    max_iterations: int = MAX_ITERATIONS,
    spans_key: str = "sc",
) -> int:
    """Train a CRF on ``docs`` into ``model_path``; RETURNS the number of gold
    spans left out because they overlap a longer one (nested data)."""
    model, dropped = train_crf_bytes(docs, spans_key, c1, c2, max_iterations, name="crf")
    model_path.write_bytes(model)
    return dropped


def predict_spans(model_path: Path, docs: Sequence[Doc]) -> List[List[SpanTuple]]:
    """The spans the CRF in ``model_path`` tags in each doc."""
    tagger = CRFTagger(model_path.read_bytes(), name="crf")
    return [bioes_to_spans(tagger.tag(doc)) for doc in docs]


def score(docs: Sequence[Doc], predicted: Sequence[List[SpanTuple]], spans_key: str = "sc") -> Dict[str, float]:
    """Exact span P/R/F of ``predicted`` against the gold spans of ``docs``
    (spaCy's ``Scorer.score_spans``, as the knowfree scorer uses)."""
    examples = []
    for doc, spans in zip(docs, predicted):
        pred = Doc(doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
        pred.spans[spans_key] = [Span(pred, start, end, label=label) for start, end, label in spans]
        examples.append(Example(pred, doc))
    scores = Scorer.score_spans(
        examples,
        attr=f"spans_{spans_key}",
        getter=lambda doc, _attr: doc.spans.get(spans_key, []),
        has_annotation=lambda doc: spans_key in doc.spans,
        allow_overlap=True,
    )
    return {
        "p": scores[f"spans_{spans_key}_p"] or 0.0,
        "r": scores[f"spans_{spans_key}_r"] or 0.0,
        "f": scores[f"spans_{spans_key}_f"] or 0.0,
    }


def select_and_score(
    train: Sequence[Doc],
    dev: Sequence[Doc],
    test: Sequence[Doc],
    workdir: Path,
    c1_grid: Sequence[float] = C1_GRID,
    c2_grid: Sequence[float] = C2_GRID,
    max_iterations: int = MAX_ITERATIONS,
) -> Dict:
    """Train one CRF per (c1, c2), pick the best on dev, score it on test.
    RETURNS the run record: test p/r/f, the chosen c1/c2, every dev score, seconds."""
    if not dev:
        raise ValueError("the dev split is empty: c1/c2 are chosen on dev, never on test")
    workdir.mkdir(parents=True, exist_ok=True)
    grid = []
    best = None
    for c1 in c1_grid:
        for c2 in c2_grid:
            path = workdir / f"crf_c1_{c1}_c2_{c2}.crfsuite"
            start = time.time()
            dropped = train_crf(train, path, c1, c2, max_iterations)
            seconds = time.time() - start
            dev_scores = score(dev, predict_spans(path, dev))
            grid.append({"c1": c1, "c2": c2, "dev_f": dev_scores["f"], "train_seconds": seconds})
            print(f"c1={c1} c2={c2}: dev F1 {100 * dev_scores['f']:.2f} ({seconds:.1f} s)", flush=True)
            if best is None or dev_scores["f"] > best[0]:  # ties: the first (sparser) setting
                best = (dev_scores["f"], c1, c2, path, seconds, dropped)
    dev_f, c1, c2, path, seconds, dropped = best
    start = time.time()
    predicted = predict_spans(path, test)
    test_scores = score(test, predicted)
    n_chars = sum(len(doc) for doc in test)
    n_gold = sum(len(gold_spans(doc, "sc")) for doc in train)
    return {
        **test_scores,
        "train_seconds": seconds,
        "predict_chars_per_second": n_chars / max(time.time() - start, 1e-9),
        "selection_seconds": sum(row["train_seconds"] for row in grid),
        "c1": c1,
        "c2": c2,
        "dev_f": dev_f,
        "grid": grid,
        "max_iterations": max_iterations,
        "features": FEATURES,
        "encoder": "crf: character n-grams",
        "trained_on": (
            "all gold spans"
            if not dropped
            else f"outermost flat spans ({dropped} of {n_gold} nested gold spans left out)"
        ),
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--dev", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="folder: metrics.json and the chosen model")
    parser.add_argument("--max-iterations", type=int, default=MAX_ITERATIONS)
    parser.add_argument(
        "--c1",
        type=float,
        action="append",
        default=None,
        help=f"c1 values to try on dev (default: {', '.join(map(str, C1_GRID))})",
    )
    parser.add_argument(
        "--c2",
        type=float,
        action="append",
        default=None,
        help=f"c2 values to try on dev (default: {', '.join(map(str, C2_GRID))})",
    )
    args = parser.parse_args(argv)
    try:
        import pycrfsuite  # noqa: F401
    except ImportError:
        sys.exit("The crf system needs python-crfsuite (a dependency of spacy-knowfree): pip install python-crfsuite")
    if not args.dev.exists():
        sys.exit(
            f"{args.dev}: no dev split. The crf system picks c1/c2 on dev and never on "
            "test; make one (knowfree convert-benchmark writes dev.spacy)."
        )
    vocab = spacy.blank("zh").vocab
    train, dev, test = (read_docbin(path, vocab) for path in (args.train, args.dev, args.test))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            record = select_and_score(
                train,
                dev,
                test,
                Path(tmp),
                c1_grid=args.c1 or C1_GRID,
                c2_grid=args.c2 or C2_GRID,
                max_iterations=args.max_iterations,
            )
            args.output.mkdir(parents=True, exist_ok=True)
            chosen = Path(tmp) / f"crf_c1_{record['c1']}_c2_{record['c2']}.crfsuite"
            (args.output / "model.crfsuite").write_bytes(chosen.read_bytes())
    except ValueError as err:
        sys.exit(f"{args.dev}: {err}")
    (args.output / "metrics.json").write_text(json.dumps(record, indent=2))
    print(f"test F1 {100 * record['f']:.2f} (c1={record['c1']}, c2={record['c2']})")


if __name__ == "__main__":
    main()

"""The classic peer: a linear-chain CRF on character n-gram features (CRFsuite).

What a low-resource Chinese NER or segmentation user tries before a neural
model. It trains on the same DocBins as every other system of the accuracy
benchmark (``benchmarks/accuracy.py --system crf``) and is scored the same
way: exact (start, end, label) span P/R/F of ``doc.spans["sc"]`` on the test
split, with spaCy's ``Scorer.score_spans``.

Features of token ``i`` (every token is one character in our corpora; a longer
token counts as one "character"), with ``<s>``/``</s>`` past the edges:

- ``bias``;
- ``T0``: its type, one of Han, digit, Latin, punct, other (``char_type``);
- ``U-2`` … ``U+2``: the unigrams in a ±2 window;
- ``B-2`` … ``B+1``: the bigrams in a ±2 window (``B-2`` = c[i-2]c[i-1],
  ``B-1`` = c[i-1]c[i], ``B+0`` = c[i]c[i+1], ``B+1`` = c[i+1]c[i+2]);
- ``T``: the trigram centred on it, c[i-1]c[i]c[i+1].

Labels are BIOES tags of the gold spans. A linear chain holds flat spans
only: on nested data the outermost spans are kept (longest first, then
leftmost; a span overlapping a kept one is dropped) and the number dropped is
recorded as ``trained_on``, while the test score is taken over all gold spans
like every system's.

Training is L-BFGS for ``max_iterations`` iterations; c1 (L1) and c2 (L2) are
picked on the dev split only (grid ``C1_GRID`` × ``C2_GRID``), then the chosen
model is scored once on test. CRFsuite's L-BFGS is deterministic, so one run
per cell stands for its seeds. Needs ``pip install "spacy-knowfree[bench]"``
(python-crfsuite).

    python benchmarks/crf.py --train train.spacy --dev dev.spacy --test test.spacy --output out/
"""

import argparse
import json
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import spacy
from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example

from spacy_knowfree.docbin_io import read_docbin

C1_GRID = (0.0, 0.05, 0.2)
C2_GRID = (0.01, 0.1, 1.0)
MAX_ITERATIONS = 300
FEATURES = "bias, character type, unigrams in a ±2 window, bigrams in a ±2 window, the centred trigram"
SpanTuple = Tuple[int, int, str]  # start, end (exclusive), label


def char_type(text: str) -> str:
    """``Han``, ``digit``, ``Latin``, ``punct`` or ``other`` (of the first character)."""
    if not text:
        return "other"
    ch = text[0]
    code = ord(ch)
    if 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x2FFFF:
        return "Han"
    folded = unicodedata.normalize("NFKC", ch)  # full-width digits and letters
    if folded.isdigit():
        return "digit"
    if folded.isascii() and folded.isalpha():
        return "Latin"
    if unicodedata.category(ch)[0] in "PS":
        return "punct"
    return "other"


def token_features(chars: Sequence[str], i: int) -> List[str]:
    """The CRF features of position ``i`` of ``chars`` (see the module docstring)."""

    def at(j: int) -> str:
        if j < 0:
            return "<s>"
        if j >= len(chars):
            return "</s>"
        return chars[j]

    feats = ["bias", f"T0={char_type(chars[i])}"]
    feats += [f"U{offset:+d}={at(i + offset)}" for offset in range(-2, 3)]
    feats += [f"B{offset:+d}={at(i + offset)}{at(i + offset + 1)}" for offset in range(-2, 2)]
    feats.append(f"T={at(i - 1)}{at(i)}{at(i + 1)}")
    return feats


def doc_features(doc: Doc) -> List[List[str]]:
    chars = [token.text for token in doc]
    return [token_features(chars, i) for i in range(len(chars))]


def flat_spans(spans: Iterable[SpanTuple]) -> Tuple[List[SpanTuple], int]:
    """The outermost non-overlapping spans (longest first, then leftmost), and
    how many overlapping spans were dropped."""
    kept: List[SpanTuple] = []
    taken = set()
    dropped = 0
    for start, end, label in sorted(set(spans), key=lambda s: (-(s[1] - s[0]), s[0], s[2])):
        if any(i in taken for i in range(start, end)):
            dropped += 1
            continue
        kept.append((start, end, label))
        taken.update(range(start, end))
    return sorted(kept), dropped


def spans_to_bioes(length: int, spans: Iterable[SpanTuple]) -> List[str]:
    """BIOES tags of flat ``spans`` over ``length`` tokens."""
    tags = ["O"] * length
    for start, end, label in spans:
        if end - start == 1:
            tags[start] = f"S-{label}"
        else:
            tags[start] = f"B-{label}"
            for i in range(start + 1, end - 1):
                tags[i] = f"I-{label}"
            tags[end - 1] = f"E-{label}"
    return tags


def bioes_to_spans(tags: Sequence[str]) -> List[SpanTuple]:
    """Spans of a BIOES sequence; an ill-formed chunk (B without E) is closed at
    the tag that breaks it, as a lenient chunker does."""
    spans: List[SpanTuple] = []
    start: Optional[int] = None
    label = ""
    for i, tag in enumerate(tags):
        prefix, _, tag_label = tag.partition("-")
        if start is not None and (prefix in ("B", "S", "O") or tag_label != label):
            spans.append((start, i, label))
            start = None
        if prefix == "S":
            spans.append((i, i + 1, tag_label))
        elif prefix == "B" or (prefix in ("I", "E") and start is None):
            start, label = i, tag_label
        if prefix == "E" and start is not None:
            spans.append((start, i + 1, label))
            start = None
    if start is not None:
        spans.append((start, len(tags), label))
    return spans


def gold_spans(doc: Doc, spans_key: str = "sc") -> List[SpanTuple]:
    return [(s.start, s.end, s.label_) for s in doc.spans.get(spans_key, [])]


def _crfsuite():
    try:
        import pycrfsuite
    except ImportError:
        sys.exit('The crf system needs python-crfsuite: pip install "spacy-knowfree[bench]"')
    return pycrfsuite


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
    pycrfsuite = _crfsuite()
    trainer = pycrfsuite.Trainer(verbose=False)
    dropped = 0
    for doc in docs:
        spans, n_dropped = flat_spans(gold_spans(doc, spans_key))
        dropped += n_dropped
        trainer.append(doc_features(doc), spans_to_bioes(len(doc), spans))
    trainer.set_params({"c1": c1, "c2": c2, "max_iterations": max_iterations, "feature.possible_transitions": True})
    trainer.train(str(model_path))
    return dropped


def predict_spans(model_path: Path, docs: Sequence[Doc]) -> List[List[SpanTuple]]:
    """The spans the CRF in ``model_path`` tags in each doc."""
    tagger = _crfsuite().Tagger()
    tagger.open(str(model_path))
    try:
        return [bioes_to_spans(tagger.tag(doc_features(doc))) if len(doc) else [] for doc in docs]
    finally:
        tagger.close()


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
    n_gold = sum(len(gold_spans(doc)) for doc in train)
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
    _crfsuite()
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

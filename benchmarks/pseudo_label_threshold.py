"""Choosing the default ``--min-confidence`` of ``knowfree pseudo-label`` on dev.

For each trained knowfree pipeline (the teacher) and its dataset's DEV split
(gold known), the dev docs are pseudo-labeled exactly as ``knowfree
pseudo-label`` does (:class:`spacy_knowfree.synthesis.pseudo_labels.PseudoLabeler`,
no extension spans) and the kept spans are scored against gold at each
threshold: precision, recall, F1, F0.5, kept spans per doc and docs without a
kept span. One decoding at the lowest threshold serves every threshold: the
decoder keeps spans greedily by probability, so the spans above a higher
threshold are exactly what decoding at it would keep.

Rule for the default: the threshold with the highest F0.5 (precision weighted
over recall: a wrong pseudo-label teaches the student a false positive, a
dropped one only a missing span), macro-averaged over the datasets; ties go to
the lower threshold.

    python benchmarks/pseudo_label_threshold.py \
        --run resume benchmarks/runs/gpu/sweep/resume/k250/defaults/seed0/model/model-best \
            benchmarks/runs/gpu/corpus/resume/dev.spacy \
        --run weibo benchmarks/runs/gpu/sweep/weibo/k250/defaults/seed0/model/model-best \
            benchmarks/runs/gpu/corpus/weibo/dev.spacy
"""

import argparse
import time
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

import spacy

from spacy_knowfree.docbin_io import read_docbin
from spacy_knowfree.synthesis.pseudo_labels import PseudoLabeler, scored_spans

ROOT = Path(__file__).resolve().parent
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BETA = 0.5

Triple = Tuple[int, int, str]


def f_beta(p: float, r: float, beta: float) -> float:
    """F-beta of a precision and a recall (0 when both are 0)."""
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0


def score_thresholds(model_path: Path, dev_path: Path, thresholds: Sequence[float]) -> Tuple[List[Dict], Dict]:
    """Rows (one per threshold) of the kept spans' scores against gold, and run info."""
    nlp = spacy.load(model_path)
    labeler = PseudoLabeler(nlp, min_confidence=min(thresholds) - 1e-6, knowledge=None, model_path=model_path)
    key = labeler.spans_key
    docs = read_docbin(dev_path, nlp.vocab)
    gold: List[Set[Triple]] = [{(s.start, s.end, s.label_) for s in doc.spans.get(key, ())} for doc in docs]
    start = time.time()
    labeled, _ = labeler(docs)
    seconds = time.time() - start
    predicted = [[((s.start, s.end, s.label_), score) for s, score in scored_spans(doc, key)] for doc in labeled]
    n_gold = sum(len(g) for g in gold)
    rows = []
    for threshold in thresholds:
        tp = kept = empty = 0
        for spans, gold_set in zip(predicted, gold):
            chosen = {triple for triple, score in spans if score > threshold}
            kept += len(chosen)
            tp += len(chosen & gold_set)
            empty += not chosen
        p = tp / kept if kept else 0.0
        r = tp / n_gold if n_gold else 0.0
        rows.append(
            {
                "threshold": threshold,
                "p": p,
                "r": r,
                "f1": f_beta(p, r, 1.0),
                "f05": f_beta(p, r, BETA),
                "kept_per_doc": kept / len(docs),
                "empty_docs": empty,
                "kept": kept,
            }
        )
    info = {
        "docs": len(docs),
        "gold": n_gold,
        "gold_per_doc": n_gold / len(docs),
        "seconds": seconds,
        "model_threshold": labeler.model_threshold,
        "key": key,
    }
    return rows, info


def choose(results: Dict[str, List[Dict]]) -> Tuple[float, Dict[float, float]]:
    """The threshold with the highest macro-averaged F0.5 (ties: the lower one)."""
    mean: Dict[float, float] = {}
    for rows in zip(*results.values()):
        mean[rows[0]["threshold"]] = sum(row["f05"] for row in rows) / len(rows)
    best = max(sorted(mean), key=lambda t: (round(mean[t], 6), -t))
    return best, mean


def report(
    results: Dict[str, List[Dict]], infos: Dict[str, Dict], runs: Dict[str, Tuple[Path, Path]], note: str
) -> str:
    """The Markdown results file."""
    best, mean = choose(results)
    lines = [
        "# Pseudo-label confidence threshold on dev",
        "",
        "`python benchmarks/pseudo_label_threshold.py` (see its docstring). Kept spans = the teacher's "
        "spans with probability above the threshold, scored against the gold dev spans (exact match of "
        "start, end and label). P/R/F in %.",
        "",
    ]
    if note:
        lines += [note, ""]
    for name, rows in results.items():
        info = infos[name]
        model, dev = runs[name]
        lines += [
            f"## {name}",
            "",
            f"Teacher `{model}` (decision threshold {info['model_threshold']:g}), dev `{dev}`: "
            f"{info['docs']} docs, {info['gold']} gold spans ({info['gold_per_doc']:.2f} per doc); "
            f"labelling took {info['seconds']:.1f}s on the CPU.",
            "",
            "| threshold | P | R | F1 | F0.5 | kept spans / doc | docs without a kept span |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            mark = " (teacher)" if abs(row["threshold"] - info["model_threshold"]) < 1e-9 else ""
            lines.append(
                f"| {row['threshold']:g}{mark} | {100 * row['p']:.1f} | {100 * row['r']:.1f} | "
                f"{100 * row['f1']:.1f} | {100 * row['f05']:.1f} | {row['kept_per_doc']:.2f} | "
                f"{row['empty_docs']} |"
            )
        lines.append("")
    lines += [
        "## Choice",
        "",
        f"Rule: the highest F0.5 macro-averaged over {', '.join(results)}; ties go to the lower threshold.",
        "",
        "| threshold | mean F0.5 |",
        "|---:|---:|",
    ]
    lines += [f"| {t:g}{' **chosen**' if t == best else ''} | {100 * v:.1f} |" for t, v in mean.items()]
    lines += ["", f"Default `--min-confidence {best:g}`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run",
        nargs=3,
        action="append",
        metavar=("NAME", "MODEL", "DEV"),
        required=True,
        help="A dataset name, its trained knowfree pipeline and its dev .spacy (repeatable).",
    )
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--note", default="", help="A line about the models (e.g. how they were trained).")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "pseudo_label_threshold.md")
    args = parser.parse_args()
    results: Dict[str, List[Dict]] = {}
    infos: Dict[str, Dict] = {}
    runs: Dict[str, Tuple[Path, Path]] = {}
    for name, model, dev in args.run:
        runs[name] = (Path(model), Path(dev))
        results[name], infos[name] = score_thresholds(Path(model), Path(dev), args.thresholds)
        print(f"{name}: {infos[name]['docs']} dev docs in {infos[name]['seconds']:.1f}s")
    text = report(results, infos, runs, args.note)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf8")
    print(text)


if __name__ == "__main__":
    main()

"""Augmentation benchmark: KnowFREE on the fusion samples alone vs with the
synthetic docs of each augmenter (issue: explanation synthesis and peers).

For each dataset and K (seeded K-shot subset, as in ``accuracy.py``):

1. ``fusion``: knowfree on the lexicon-fused K sentences (the ``knowfree+lexicon``
   run of ``accuracy.py``; it is also the frozen annotator of the augmenters).
2. ``fusion+synthetic``: + ``knowfree synthesize`` (enriched explanations, P_exp/P_ext).
3. ``fusion+generate``: + ``knowfree augment generate`` (entity-conditioned
   generation with entity diversification).
4. ``fusion+paraphrase``: + ``knowfree augment paraphrase`` (entity-preserving).

Every augmenter's docs are annotated by the same frozen annotator and get
lexicon extension spans (the paper's appendix E setting), are flagged synthetic
(weight beta) and are added to the fusion samples. Generation uses the
embedded SmolLM2 backend unless ``--llm-config`` names another (e.g. an
OpenAI-compatible server); replies are cached, so an interrupted run resumes,
and finished training runs are skipped.

    python benchmarks/augmentation.py --dataset weibo --k 250 --limit 120
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from spacy.vocab import Vocab

from spacy_knowfree.docbin_io import read_docbin, write_docbin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import (  # noqa: E402
    ROOT,
    configure_runs,
    header,
    mean_sd,
    prepare_corpus,
    train_and_evaluate,
    train_on,
    without_crf_tags,
)

AUGMENTERS = ("synthetic", "generate", "paraphrase")


def augment(
    name: str, fused: Path, annotator: Path, out: Path, limit: int, seed: int, threads: int, llm_config: Optional[Path]
) -> Path:
    """Write (or resume) the synthetic DocBin of one augmenter; returns its path."""
    synthetic = out / f"{name}.spacy"
    if synthetic.exists():
        return synthetic
    out.mkdir(parents=True, exist_ok=True)
    common = [
        "--summary",
        str(out / f"{name}.summary.json"),
        "--log",
        str(out / f"{name}.log.jsonl"),
        "--threads",
        str(threads),
    ]
    if llm_config is not None:
        common += ["-c", str(llm_config)]
    if name == "synthetic":
        args = ["synthesize", str(fused), str(annotator), str(synthetic), "--limit", str(limit)]
    elif name == "generate":
        args = [
            "augment",
            "generate",
            str(fused),
            str(synthetic),
            "--n-samples",
            str(limit),
            "--seed",
            str(seed),
            "--annotator",
            str(annotator),
            "--extension",
        ]
    else:
        args = [
            "augment",
            "paraphrase",
            str(fused),
            str(synthetic),
            "--limit",
            str(limit),
            "--annotator",
            str(annotator),
            "--extension",
        ]
    start = time.time()
    with (out / f"{name}.stdout.txt").open("w", encoding="utf8") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "spacy_knowfree", *args, *common], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}), see {out / f'{name}.stdout.txt'}")
    (out / f"{name}.seconds").write_text(f"{time.time() - start:.0f}")
    return synthetic


def combine(fused: Path, synthetic: Path, path: Path) -> int:
    """fusion + synthetic docs in one DocBin; RETURNS the number of synthetic docs."""
    vocab = Vocab()
    added = read_docbin(synthetic, vocab, allow_empty=True)
    if not path.exists():
        write_docbin(read_docbin(fused, vocab) + added, path)
    return len(added)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", required=True, help="weibo, resume, ... (repeatable)")
    parser.add_argument("--k", default="250", help="training sentences (as in accuracy.py)")
    parser.add_argument("--augmenter", action="append", default=None, choices=AUGMENTERS)
    parser.add_argument("--seed", action="append", type=int, default=None)
    parser.add_argument(
        "--limit",
        type=int,
        default=120,
        help="source sentences (synthesize, paraphrase) / sentences to generate (generate)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the embedded LLM")
    parser.add_argument("--llm-config", type=Path, default=None, help="-c of the augmenters (default: SmolLM2)")
    parser.add_argument("--max-steps", type=int, default=1200)
    parser.add_argument("--eval-frequency", type=int, default=200)
    parser.add_argument("--patience", type=int, default=0, help="spacy train patience (0: none)")
    parser.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "augmentation.md")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU of the trainings (-1: CPU)")
    parser.add_argument(
        "--notes", type=Path, default=None, help="markdown file appended under the table (how the runs were made)"
    )
    args = parser.parse_args(argv)
    configure_runs(args.gpu_id)
    augmenters = args.augmenter or list(AUGMENTERS)
    seeds = args.seed or [0]
    # without the CRF peer (packaged since 0.8.0), as the fusion runs beside them
    config = str(without_crf_tags(ROOT / "configs" / "knowfree_zh_cpu.cfg", args.workdir / "configs"))
    steps = (args.max_steps, args.eval_frequency, args.patience)
    rows = []
    for dataset in args.dataset:
        corpus = prepare_corpus(dataset, args.datasets_dir, args.workdir, [args.k], sample_seed=0)
        fused = corpus / f"train_{args.k}_fused.spacy"
        base = args.workdir / dataset / f"k{args.k}"
        results: Dict[str, List[Dict]] = {"fusion": []}
        n_synthetic: Dict[str, int] = {}
        for seed in seeds:
            print(f"[{dataset} K={args.k} fusion seed={seed}]", flush=True)
            run_dir = base / "knowfree_lexicon" / f"seed{seed}"
            results["fusion"].append(train_and_evaluate("knowfree+lexicon", corpus, args.k, seed, run_dir, *steps))
            annotator = run_dir / "model" / "model-best"
            for name in augmenters:
                print(f"[{dataset} K={args.k} fusion+{name} seed={seed}]", flush=True)
                out = base / "augment" / f"seed{seed}"
                synthetic = augment(name, fused, annotator, out, args.limit, seed, args.threads, args.llm_config)
                train = out / f"train_fused_{name}.spacy"
                n_synthetic[name] = combine(fused, synthetic, train)
                runs = results.setdefault(f"fusion+{name}", [])
                if n_synthetic[name] == 0:  # nothing kept: the training data is the fusion samples
                    continue
                runs.append(train_on(config, train, corpus, seed, base / f"knowfree_{name}" / f"seed{seed}", *steps))
        for system, runs in results.items():
            name = system.split("+")[-1]
            if not runs:
                rows.append((dataset, args.k, system, "0", "–", "–", "–", "not trained: no synthetic doc kept"))
                continue
            rows.append(
                (
                    dataset,
                    args.k,
                    system,
                    str(n_synthetic.get(name, 0)),
                    mean_sd([r["p"] for r in runs]),
                    mean_sd([r["r"] for r in runs]),
                    mean_sd([r["f"] for r in runs]),
                    f"{statistics.mean(r['train_seconds'] for r in runs):.0f}",
                )
            )
        write_table(
            args.output,
            sys.argv if argv is None else ["benchmarks/augmentation.py", *argv],
            rows,
            args.workdir,
            args.k,
            seeds[0],
            args.dataset,
            args.notes.read_text(encoding="utf8") if args.notes else "",
        )
    print(args.output.read_text())


def write_table(
    path: Path, argv: List[str], rows, workdir: Path, k: str, seed: int, datasets: List[str], notes: str = ""
) -> None:
    lines = header(argv)
    lines[0] = "# Augmentation: fusion samples alone vs + each augmenter's synthetic docs"
    lines.append("| dataset | K | training data | synthetic docs | P | R | F1 | train s |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Generation summaries (seed %d): what each augmenter generated, kept and dropped." % seed, ""]
    for dataset in datasets:
        for summary in sorted((workdir / dataset / f"k{k}" / "augment" / f"seed{seed}").glob("*.summary.json")):
            seconds = summary.with_name(summary.name.replace(".summary.json", ".seconds"))
            took = f", {seconds.read_text().strip()} s" if seconds.exists() else ""
            lines.append(
                f"- {dataset} {summary.name.split('.')[0]}{took}: "
                f"`{json.dumps(json.loads(summary.read_text()), ensure_ascii=False)}`"
            )
    if notes:
        lines += ["", notes.rstrip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


if __name__ == "__main__":
    main()

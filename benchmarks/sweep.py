"""Dev-only sweep of the CPU config's hyper-parameters (defaults chosen on dev).

Each setting is a set of ``spacy train`` overrides of ``--config``
(``configs/knowfree_zh_cpu.cfg`` by default). Every setting trains once per
dataset on the seeded K-shot subset (the accuracy benchmark's corpora) and is
scored by its best dev F1 during training (``model-best/meta.json``). The
test split is never read: the training commands name the train and dev files
only, and the table holds dev scores only. Test scores come from
``benchmarks/accuracy.py`` once the defaults are fixed.

Every finished run is one JSON line in ``--runs-log``; a setting the log
already holds for a dataset is not trained again, so an interrupted sweep
resumes, and a sweep can be extended stage by stage (coarse to fine). The
table ranks the settings by their mean dev F1 over the datasets they ran on
(rule: the highest mean over all swept datasets wins; a setting missing a
dataset is listed but not ranked).

    python benchmarks/sweep.py --dataset weibo --dataset resume --dataset msr --stage coarse
    python benchmarks/sweep.py --dataset resume --setting "alpha=0.5" \\
        --setting "alpha=1.0;dropout=0.2"

Two names of a setting are run options rather than config paths:

* ``encoder=NAME`` swaps the tok2vec's embedding block (:data:`ENCODERS`)
  as ``benchmarks/accuracy.py --encoder`` does: ``hash`` (spaCy's
  ``spacy.MultiHashEmbed.v2``), ``char_ngram``
  (``spacy-knowfree.CharNgramEmbed.v1``: + character bigrams) or
  ``char_ngram_words`` (+ jieba word-boundary features as well) or
  ``char_ngram_words_tags`` (+ jieba's word tags). The sweep started from
  ``hash``, the packaged configs' encoder up to 0.2.0, and its keys stay
  relative to it: ``defaults`` is that baseline, whatever the packaged configs
  say today (they use ``char_ngram_words_tags`` since 0.5.0, chosen by this
  sweep, and ``char_ngram_words`` in 0.3.0 and 0.4.0). For the same reason
  the sweep trains the config without the CRF peer (the ``knowfree_crf``
  component, in the packaged configs since 0.8.0);
* ``train=fused`` trains on the lexicon's fusion samples
  (``train_K_fused.spacy``: extension labels in the loss) instead of the
  plain subset (``train=plain``, the default).

    python benchmarks/sweep.py --dataset resume --setting "encoder=char_ngram_words;train=fused"
"""

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import (
    ENCODERS,
    LEGACY_ENCODER,
    ROOT,
    configure_runs,
    device_name,
    encoder_config,
    prepare_corpus,
    run,
    runs_log_lock,
    without_crf_tags,
)  # noqa: E402

KF = "components.knowfree"
# short names of the config paths a setting may change
ALIASES = {
    "alpha": f"{KF}.alpha",
    "dropout": f"{KF}.model.dropout",
    "hidden_width": f"{KF}.model.hidden_width",
    "grid_width": f"{KF}.model.grid_width",
    "n_biaffine_heads": f"{KF}.model.n_biaffine_heads",
    "n_attention_heads": f"{KF}.model.n_attention_heads",
    "token_evidence": f"{KF}.model.token_evidence",
    "tok2vec_width": "vars.tok2vec_width",
    "depth": f"{KF}.model.tok2vec.encode.depth",
    "window_size": f"{KF}.model.tok2vec.encode.window_size",
    "learn_rate": "training.optimizer.learn_rate",
    "train_dropout": "training.dropout",
    "max_steps": "training.max_steps",
    "max_span_width": "vars.max_span_width",
    "batch_start": "training.batcher.size.start",
    "batch_stop": "training.batcher.size.stop",
}
# what every run sets unless its setting says otherwise: the steps, the band and
# the optimizer the sweep started with (the packaged config says max_span_width
# "auto" since 0.4.0, use_averages = true since 0.6.0 and token_evidence = true
# since 0.7.0; the settings "max_span_width=auto",
# "training.optimizer.use_averages=true" and "token_evidence=true" measure them)
BASELINE = {
    "training.max_steps": "1200",
    "vars.max_span_width": "32",
    "training.optimizer.use_averages": "false",
    f"{KF}.model.token_evidence": "false",
}
# the coarse stage: one change at a time from the defaults
STAGES: Dict[str, List[str]] = {
    "coarse": [
        "defaults",
        "token_evidence=true",
        "alpha=0.5",
        "alpha=1.0",
        "dropout=0.2",
        "train_dropout=0.2",
        "tok2vec_width=256",
        "depth=2",
        "window_size=2",
        "hidden_width=400;grid_width=400",
        "n_biaffine_heads=1",
        "n_attention_heads=20",
        "learn_rate=0.002",
        "max_steps=2400",
        "batch_start=100;batch_stop=500",
    ],
}


# the first value of each run option is the baseline a key leaves out
RUN_OPTIONS = {"encoder": (LEGACY_ENCODER, *(e for e in ENCODERS if e != LEGACY_ENCODER)), "train": ("plain", "fused")}
EMBED_SECTION = "[components.knowfree.model.tok2vec.embed]"


def split_setting(text: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """A setting's config overrides and its run options (defaults filled in)."""
    overrides = parse_setting(text)
    options = {name: values[0] for name, values in RUN_OPTIONS.items()}
    for name in RUN_OPTIONS:
        if name in overrides:
            options[name] = overrides.pop(name)
            if options[name] not in RUN_OPTIONS[name]:
                raise SystemExit(f"setting {text!r}: {name} must be one of {', '.join(RUN_OPTIONS[name])}")
    return overrides, options


def parse_setting(text: str) -> Dict[str, str]:
    """``"a=1;b=2"`` -> {config path or run option: value}; ``"defaults"`` -> {}."""
    if text.strip() == "defaults":
        return {}
    overrides = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise SystemExit(f"setting {text!r}: write NAME=VALUE;NAME=VALUE (or 'defaults')")
        name = name.strip()
        overrides[ALIASES.get(name, name)] = value.strip()
    return overrides


def canonical(text: str) -> str:
    """One spelling per setting (sorted, aliases resolved, run options at their
    defaults left out), the key in the log."""
    overrides, options = split_setting(text)
    overrides.update({name: value for name, value in options.items() if value != RUN_OPTIONS[name][0]})
    return ";".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "defaults"


def train_command(
    config: Path,
    corpus: Path,
    k: str,
    seed: int,
    out: Path,
    overrides: Dict[str, str],
    eval_frequency: int,
    train: str = "plain",
) -> List[str]:
    """The ``spacy train`` command of one sweep run: train and dev files only."""
    train_file = corpus / (f"train_{k}_fused.spacy" if train == "fused" else f"train_{k}.spacy")
    cmd = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(config),
        "--output",
        str(out / "model"),
        "--paths.train",
        str(train_file),
        "--paths.dev",
        str(corpus / "dev.spacy"),
        "--system.seed",
        str(seed),
        "--training.eval_frequency",
        str(eval_frequency),
        "--training.patience",
        "0",
    ]
    overrides = {**BASELINE, **overrides}
    for path, value in overrides.items():
        cmd += [f"--{path}", value]
    return cmd


def dev_scores(model_dir: Path) -> Dict[str, float]:
    """Best dev P/R/F of a finished run (spaCy writes them to model-best/meta.json)."""
    performance = json.loads((model_dir / "model-best" / "meta.json").read_text())["performance"]
    prefix = "spans_sc" if "spans_sc_f" in performance else "ents"
    return {name: float(performance[f"{prefix}_{name}"] or 0.0) for name in ("p", "r", "f")}


def read_log(path: Path) -> Dict[Tuple[str, str, str, int], Dict]:
    runs = {}
    if path.exists():
        for line in path.read_text(encoding="utf8").splitlines():
            if line.strip():
                record = json.loads(line)
                runs[(record["dataset"], record["k"], record["setting"], record["seed"])] = record
    return runs


def append_log(path: Path, record: Dict) -> None:
    with runs_log_lock(path):
        with path.open("a", encoding="utf8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_table(path: Path, runs: Dict, datasets: List[str], argv: List[str]) -> None:
    settings = sorted({key[2] for key in runs})
    rows = []
    for setting in settings:
        cells = []
        for dataset in datasets:
            scores = [r["dev"]["f"] for (d, _, s, _), r in runs.items() if d == dataset and s == setting]
            cells.append(statistics.mean(scores) if scores else None)
        done = [c for c in cells if c is not None]
        mean = statistics.mean(done) if len(done) == len(datasets) else None
        rows.append((mean, setting, cells))
    rows.sort(key=lambda row: (row[0] is None, -(row[0] or 0.0)))
    lines = [
        "# Sweep: dev F1 of the CPU config's settings",
        "",
        f"- command: `python {' '.join(argv)}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        "- dev F1 (%) of the best checkpoint, the mean over the seeds a setting ran (one unless "
        "`sweep_runs.jsonl` holds more); the test split is "
        "never read. Rule: the highest mean over all swept datasets wins; a setting "
        "missing a dataset is not ranked.",
        "",
        "| setting | " + " | ".join(datasets) + " | mean |",
        "|---|" + "---:|" * (len(datasets) + 1),
    ]
    for mean, setting, cells in rows:
        shown = [f"{100 * c:.2f}" if c is not None else "" for c in cells]
        lines.append(f"| `{setting}` | " + " | ".join(shown) + f" | {'' if mean is None else f'{100 * mean:.2f}'} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", required=True)
    parser.add_argument("--k", default="250")
    parser.add_argument("--stage", choices=list(STAGES), action="append", default=[])
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        help=f"NAME=VALUE;NAME=VALUE (names: config paths or {', '.join(ALIASES)}), or 'defaults'",
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "knowfree_zh_cpu.cfg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-frequency", type=int, default=200)
    parser.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs")
    parser.add_argument("--runs-log", type=Path, default=ROOT / "benchmarks" / "results" / "sweep_runs.jsonl")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "sweep.md")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    configure_runs(-1, args.threads)
    settings = [s for stage in args.stage for s in STAGES[stage]] + args.setting
    logged = read_log(args.runs_log)
    jobs = [
        (dataset, canonical(setting))
        for dataset in args.dataset
        for setting in settings
        if (dataset, args.k, canonical(setting), args.seed) not in logged
    ]
    if not args.report_only:
        fused = any(split_setting(setting)[1]["train"] == "fused" for _, setting in jobs)
        for dataset in sorted({d for d, _ in jobs}):
            prepare_corpus(dataset, args.datasets_dir, args.workdir, [args.k], sample_seed=0, fused=fused)

    def one(job: Tuple[str, str]) -> Optional[str]:
        dataset, setting = job
        corpus = args.workdir / "corpus" / dataset
        slug = setting.replace("/", "_").replace(";", "__").replace("=", "-")
        out = args.workdir / "sweep" / dataset / f"k{args.k}" / slug / f"seed{args.seed}"
        out.mkdir(parents=True, exist_ok=True)
        overrides, options = split_setting(setting)
        config = encoder_config(without_crf_tags(args.config, out), options["encoder"], out)
        cmd = train_command(
            config, corpus, args.k, args.seed, out, overrides, args.eval_frequency, train=options["train"]
        )
        try:
            seconds = run(cmd, out / "train.log")
        except RuntimeError as err:
            print(f"[{dataset} {setting}] FAILED: {err}", flush=True)
            return f"{dataset} {setting}: {err}"
        scores = dev_scores(out / "model")
        append_log(
            args.runs_log,
            {
                "dataset": dataset,
                "k": args.k,
                "setting": setting,
                "seed": args.seed,
                "config": os.path.relpath(args.config, ROOT),
                "encoder": options["encoder"],
                "train": options["train"],
                "dev": scores,
                "train_seconds": seconds,
                "device": device_name(),
                "finished": time.strftime("%Y-%m-%d %H:%M"),
            },
        )
        print(f"[{dataset} {setting}] dev F1 {100 * scores['f']:.2f}", flush=True)
        return None

    failures = []
    if not args.report_only:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            failures = [f for f in pool.map(one, jobs) if f]
    runs = {key: r for key, r in read_log(args.runs_log).items() if key[0] in args.dataset and key[1] == args.k}
    write_table(args.output, runs, args.dataset, sys.argv if argv is None else ["benchmarks/sweep.py", *argv])
    print(args.output.read_text())
    if failures:
        sys.exit("failed runs:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()

"""Speed and memory: knowfree vs spaCy spancat and ner (same tokens, same CNN tok2vec).

Trains every system briefly on the embedded sample (``assets/sample``) with
its ``configs/*_zh_cpu.cfg`` config, then measures in fresh subprocesses:

- inference characters/second, 1 and 2 torch/BLAS threads, on the Weibo +
  Resume test sentences (747 docs, 30k characters; written from
  ../shared/datasets when missing);
- training seconds per 100 steps (``nlp.update`` on batches of the sample,
  the config's batcher, after 5 warm-up steps; 1 thread);
- peak memory above the loaded pipeline, and seconds, for one document of
  100 ... 20,000 characters (2 threads).

Systems: ``knowfree`` (the packaged config as it is: ``max_span_width =
"auto"``), ``knowfree_w32`` (the same with ``max_span_width = 32``, the
packaged width up to 0.3.0), ``knowfree_int8`` (``knowfree`` after ``knowfree
quantize``), ``knowfree_grid120`` (``knowfree`` with ``grid_width = 120``
instead of 200: the attention's Q/K/V projection, the head's largest cost, is
~2.8x smaller), ``knowfree_hash`` (the packaged config with spaCy's
``MultiHashEmbed`` instead of its character n-gram and jieba word-boundary
embedding: what the new encoder costs), ``knowfree_words`` (the packaged
config without jieba's word tags, ``word_tags = false``, the encoder of 0.3.0
and 0.4.0: what the tags cost), ``knowfree_no_evidence`` (the packaged config
with ``token_evidence = false``, the head up to 0.6.0: what the begin/inside/end
term costs), ``knowfree_no_crf_tags`` (the packaged config without the CRF
peer, ``knowfree init config --no-crf-tags``, the network up to 0.7.0: what
the ``knowfree_crf`` component and its tags cost), ``spancat`` and ``ner``
(their packaged configs, which have the CRF peer too since 0.8.0). The two
encoder variants start from the config without the CRF peer, whose tags need
the character n-gram embedding. Writes a
markdown table to ``benchmarks/results/speed.md`` and the numbers, with the
ratios under stable names (``knowfree_over_ner_1thread``,
``knowfree_over_spancat_1thread``, ``train_knowfree_over_spancat``,
``train_knowfree_over_ner``, and the same with ``knowfree_w32`` /
``knowfree_grid120`` / ``knowfree_int8``;
``knowfree_over_knowfree_hash_1thread``, ``knowfree_over_knowfree_words_1thread``,
``knowfree_over_knowfree_no_evidence_1thread``,
``knowfree_over_knowfree_no_crf_tags_1thread``),
to ``speed.json`` beside it.

    python benchmarks/speed.py
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import encoder_config, without_crf_tags  # noqa: E402
from machine import cpu_name, versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "knowfree": "configs/knowfree_zh_cpu.cfg",
    "knowfree_w32": "configs/knowfree_zh_cpu.cfg",
    "knowfree_grid120": "configs/knowfree_zh_cpu.cfg",
    "knowfree_hash": "configs/knowfree_zh_cpu.cfg",
    "knowfree_words": "configs/knowfree_zh_cpu.cfg",
    "knowfree_no_evidence": "configs/knowfree_zh_cpu.cfg",
    "knowfree_no_crf_tags": "configs/knowfree_zh_cpu.cfg",
    "spancat": "configs/spancat_zh_cpu.cfg",
    "ner": "configs/ner_zh_cpu.cfg",
}
# ``spacy train`` overrides of a system beyond its config
OVERRIDES = {
    "knowfree_w32": ["--vars.max_span_width", "32"],
    "knowfree_grid120": ["--components.knowfree.model.grid_width", "120"],
    "knowfree_no_evidence": ["--components.knowfree.model.token_evidence", "false"],
}
SYSTEMS = [
    "knowfree",
    "knowfree_w32",
    "knowfree_grid120",
    "knowfree_int8",
    "knowfree_hash",
    "knowfree_words",
    "knowfree_no_evidence",
    "knowfree_no_crf_tags",
    "spancat",
    "ner",
]
# systems whose config swaps the tok2vec's embedding (benchmarks/accuracy.py's encoders)
ENCODER_VARIANTS = {"knowfree_hash": "hash", "knowfree_words": "char_ngram_words"}
# the variants of the packaged config that ``knowfree`` is set against: what each
# of its parts costs
KNOWFREE_VARIANTS = (*ENCODER_VARIANTS, "knowfree_no_evidence", "knowfree_no_crf_tags")
LENGTHS = [100, 1000, 5000, 20000]
TEST_SETS = ("weibo", "resume")

CHILD = r"""
import json, os, random, resource, sys, time
import spacy
from spacy.tokens import DocBin
mode, model, arg = sys.argv[1], sys.argv[2], sys.argv[3]

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

if mode == "train":
    from spacy.training import Example
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config, registry
    overrides = json.loads(sys.argv[4])
    config = load_config(model, overrides=overrides, interpolate=False)
    config["paths"]["train"] = config["paths"]["dev"] = arg
    nlp = init_nlp(config)
    training = registry.resolve(config.interpolate()["training"])
    docs = list(DocBin().from_disk(arg).get_docs(nlp.vocab))
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    random.seed(0)
    optimizer, steps, warmup = training["optimizer"], int(sys.argv[5]), 5
    batches = []
    while len(batches) < steps + warmup:
        random.shuffle(examples)
        batches.extend(training["batcher"](examples))
    for i, batch in enumerate(batches[: steps + warmup]):
        if i == warmup:
            start = time.perf_counter()
        nlp.update(batch, sgd=optimizer, drop=training["dropout"], losses={}, annotates=training["annotating_components"])
    print(json.dumps({"s_per_100_steps": 100 * (time.perf_counter() - start) / steps}))
elif mode == "speed":
    nlp = spacy.load(model)
    texts = [d.text for path in arg.split(",") for d in DocBin().from_disk(path).get_docs(nlp.vocab)]
    list(nlp.pipe(texts[:16]))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        n = sum(len(doc.text) for doc in nlp.pipe(texts, batch_size=64))
        best = max(best, n / (time.perf_counter() - start))
    print(json.dumps({"chars_per_s": best, "docs": len(texts), "chars": n}))
else:
    nlp = spacy.load(model)
    base = "张三在北京大学工作，李四去了上海市第一人民医院。"
    text = (base * (int(arg) // len(base) + 1))[: int(arg)]
    nlp("热身")
    before = rss_mb()
    start = time.perf_counter()
    doc = nlp(text)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak - before, "seconds": seconds, "chars": len(doc.text)}))
"""


def run(cmd: List[str], env: Optional[Dict[str, str]] = None) -> str:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def child(mode: str, model: Path, arg: str, threads: int, *extra: str) -> Dict:
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads)
    )
    out = run(
        [
            sys.executable,
            "-c",
            f"import torch; torch.set_num_threads({threads})\n" + CHILD,
            mode,
            str(model),
            arg,
            *extra,
        ],
        env=env,
    )
    return json.loads(out.strip().splitlines()[-1])


def prepare(workdir: Path, datasets_dir: Path) -> Dict[str, Path]:
    """The sample's splits, and the test splits of the benchmark datasets."""
    corpus = workdir / "corpus"
    paths = {split: corpus / f"{split}.spacy" for split in ("train", "dev", "test")}
    for split, path in paths.items():
        if not path.exists():
            run(
                [
                    sys.executable,
                    "-m",
                    "spacy_knowfree",
                    "convert",
                    f"assets/sample/{split}.jsonl",
                    str(path),
                    "--format",
                    "jsonl",
                ]
            )
    for dataset in TEST_SETS:
        path = corpus / f"{dataset}_test.spacy"
        if not path.exists():
            import spacy

            from spacy_knowfree.converters import read_benchmark
            from spacy_knowfree.docbin_io import write_docbin

            vocab = spacy.blank("zh").vocab
            write_docbin(read_benchmark(dataset, "test", datasets_dir, vocab, warn=False), path)
        paths[f"{dataset}_test"] = path
    return paths


def config_path(system: str, workdir: Path) -> Path:
    """The config ``system`` trains with (an encoder variant is written into ``workdir``)."""
    config = ROOT / CONFIGS[system]
    if system in ENCODER_VARIANTS:
        return encoder_config(
            without_crf_tags(config, workdir / "configs"), ENCODER_VARIANTS[system], workdir / "configs"
        )
    if system == "knowfree_no_crf_tags":
        return without_crf_tags(config, workdir / "configs")
    return config


def train(system: str, corpus: Dict[str, Path], workdir: Path, epochs: int) -> Path:
    out = workdir / system
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(config_path(system, workdir)),
            "--output",
            str(out),
            "--paths.train",
            str(corpus["train"]),
            "--paths.dev",
            str(corpus["dev"]),
            "--training.max_epochs",
            str(epochs),
            "--training.max_steps",
            "0",
            "--training.eval_frequency",
            "100000",
            "--nlp.batch_size",
            "64",
            *OVERRIDES.get(system, []),
        ]
    )
    return out / "model-last"


def override_dict(args: List[str]) -> Dict[str, object]:
    """``["--a.b", "1", "--c", "auto"]`` -> ``{"a.b": 1, "c": "auto"}``: ``spacy
    train``'s command-line overrides as the config overrides of the timed run."""
    out: Dict[str, object] = {}
    for name, value in zip(args[::2], args[1::2]):
        try:
            out[name[2:]] = json.loads(value)
        except ValueError:
            out[name[2:]] = value
    return out


def quantize(model: Path, workdir: Path) -> Path:
    out = workdir / "knowfree_int8"
    run([sys.executable, "-m", "spacy_knowfree", "quantize", str(model), str(out)])
    return out


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}"


def ratios(results: Dict[str, Dict]) -> Dict[str, float]:
    """knowfree* / peer: inference characters per second (1 and 2 threads;
    above 1: knowfree is faster) and training seconds per step (below 1:
    knowfree is faster), for the pairs that ``results`` holds."""
    out: Dict[str, float] = {}
    for system in ("knowfree", "knowfree_w32", "knowfree_grid120", "knowfree_int8"):
        for peer in ("ner", "spancat"):
            if system not in results or peer not in results:
                continue
            a, b = results[system], results[peer]
            for threads in (1, 2):
                out[f"{system}_over_{peer}_{threads}thread"] = a[f"chars_per_s_{threads}"] / b[f"chars_per_s_{threads}"]
            if "train_s_per_100_steps" in a:
                out[f"train_{system}_over_{peer}"] = a["train_s_per_100_steps"] / b["train_s_per_100_steps"]
    for variant in KNOWFREE_VARIANTS:  # what the packaged encoder and head cost against each other one
        if {"knowfree", variant} <= set(results):
            for threads in (1, 2):
                out[f"knowfree_over_{variant}_{threads}thread"] = (
                    results["knowfree"][f"chars_per_s_{threads}"] / results[variant][f"chars_per_s_{threads}"]
                )
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs" / "speed")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=60, help="timed training steps per system")
    parser.add_argument("--length", type=int, action="append", default=None)
    parser.add_argument("--system", action="append", choices=SYSTEMS, default=None)
    parser.add_argument(
        "--peer-max-length",
        type=int,
        default=None,
        help="memory runs of spancat/ner only up to this length (spancat needs ~9 GB at 20,000 characters)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "speed.md")
    args = parser.parse_args(argv)
    lengths = args.length or LENGTHS
    systems = args.system or SYSTEMS
    corpus = prepare(args.workdir, args.datasets)
    test_sets = ",".join(str(corpus[f"{name}_test"]) for name in TEST_SETS)
    results: Dict[str, Dict] = {}
    models: Dict[str, Path] = {}
    for system in systems:
        print(f"[{system}] training", flush=True)
        if system == "knowfree_int8":
            models[system] = quantize(
                models.get("knowfree") or train("knowfree", corpus, args.workdir, args.epochs), args.workdir
            )
            res: Dict = {}
        else:
            models[system] = train(system, corpus, args.workdir, args.epochs)
            overrides = override_dict(OVERRIDES.get(system, []))
            res = child(
                "train",
                config_path(system, args.workdir),
                str(corpus["train"]),
                1,
                json.dumps(overrides),
                str(args.train_steps),
            )
            res = {"train_s_per_100_steps": res["s_per_100_steps"]}
        cfg_path = models[system] / "knowfree" / "cfg"
        if cfg_path.exists():
            res["max_span_width"] = json.loads(cfg_path.read_text())["max_span_width"]
        for threads in (1, 2):
            print(f"[{system}] inference, {threads} thread(s)", flush=True)
            speed = child("speed", models[system], test_sets, threads)
            res[f"chars_per_s_{threads}"] = speed["chars_per_s"]
        for length in lengths:
            if args.peer_max_length and not system.startswith("knowfree") and length > args.peer_max_length:
                continue
            print(f"[{system}] memory, {length} characters", flush=True)
            res[f"mem_{length}"] = child("memory", models[system], str(length), 2)
        results[system] = res
    summary = ratios(results)
    write_report(args, argv, results, summary, lengths)


def write_report(
    args: argparse.Namespace,
    argv: Optional[List[str]],
    results: Dict[str, Dict],
    summary: Dict[str, float],
    lengths: List[int],
) -> None:
    systems = list(results)
    rows = [
        ("inference chars/s, 1 thread (Weibo + Resume test)", "chars_per_s_1", None, "{:.0f}"),
        ("inference chars/s, 2 threads", "chars_per_s_2", None, "{:.0f}"),
        ("training s / 100 steps (sample, 1 thread)", "train_s_per_100_steps", None, "{:.1f}"),
        ("max_span_width", "max_span_width", None, "{}"),
    ]
    for length in lengths:
        rows.append((f"peak MB above loaded pipeline, {length} chars", f"mem_{length}", "peak_mb", "{:.0f}"))
        rows.append((f"seconds for one doc of {length} chars", f"mem_{length}", "seconds", "{:.2f}"))
    command = " ".join(["benchmarks/speed.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Speed and memory: knowfree vs spancat and ner (same character tokens, same CNN tok2vec)",
        "",
        f"- command: `python {command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- versions: {versions()}",
        f"- machine: {machine()}",
        f"- models: trained {args.epochs} epochs on assets/sample; `knowfree`, `spancat` and `ner` are the "
        'packaged configs (with the knowfree_crf component since 0.8.0; knowfree with max_span_width "auto"), '
        "`knowfree_w32` knowfree with max_span_width 32 (the packaged "
        "width before 0.4.0), `knowfree_grid120` the packaged config with grid_width 120, "
        "`knowfree_int8` `knowfree` after `knowfree quantize`, `knowfree_hash` the packaged config without the "
        "CRF peer and with spaCy's MultiHashEmbed (the encoder before 0.3.0), `knowfree_words` the packaged "
        "config without the CRF peer and word_tags (0.3.0-0.4.0), "
        "`knowfree_no_evidence` the packaged config with token_evidence false (the head up to 0.6.0), "
        "`knowfree_no_crf_tags` the packaged config without the knowfree_crf component (--no-crf-tags, up to 0.7.0); "
        "spancat ngram suggester 1..32",
        "",
        "| measure | " + " | ".join(systems) + " |",
        "|---|" + "---:|" * len(systems),
    ]
    for label, key, sub, fmt in rows:
        cells = []
        for system in systems:
            value = results[system].get(key)
            value = value.get(sub) if sub and isinstance(value, dict) else value
            cells.append("–" if value is None else fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if summary:
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in summary.items()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf8")
    payload = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "ratios": summary,
        "systems": results,
    }
    args.output.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

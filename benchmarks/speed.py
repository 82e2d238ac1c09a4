"""Speed and memory: knowfree vs spaCy spancat with the same tok2vec, one run.

Trains both systems briefly on the embedded sample (``assets/sample``) with
their ``configs/*_zh_cpu.cfg`` configs, then measures in fresh subprocesses:

- inference characters/second on a batch of docs, with 1 and 2 torch/BLAS threads;
- training seconds per epoch on the sample;
- peak memory above the loaded pipeline for one document of 100 ... 20,000 characters.

Writes a markdown table (absolute values and knowfree/spancat ratios) to
``benchmarks/results/speed.md`` with the command, versions and machine.

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
from machine import cpu_name, versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = {"knowfree": "configs/knowfree_zh_cpu.cfg", "spancat": "configs/spancat_zh_cpu.cfg"}
LENGTHS = [100, 1000, 5000, 20000]

CHILD = r"""
import json, os, resource, sys, time
import spacy
from spacy.tokens import DocBin
mode, model, arg = sys.argv[1], sys.argv[2], sys.argv[3]

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

nlp = spacy.load(model)
texts = [d.text for d in DocBin().from_disk(arg).get_docs(nlp.vocab)] if mode == "speed" else None
if mode == "speed":
    list(nlp.pipe(texts[:8]))
    start = time.perf_counter()
    n = 0
    for _ in range(3):
        for doc in nlp.pipe(texts, batch_size=64):
            n += len(doc.text)
    print(json.dumps({"chars_per_s": n / (time.perf_counter() - start)}))
else:
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


def child(mode: str, model: Path, arg: str, threads: int) -> Dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    out = run([sys.executable, "-c", f"import torch; torch.set_num_threads({threads})\n" + CHILD,
               mode, str(model), arg], env=env)
    return json.loads(out.strip().splitlines()[-1])


def prepare(workdir: Path) -> Path:
    corpus = workdir / "corpus"
    for split in ("train", "dev", "test"):
        if not (corpus / f"{split}.spacy").exists():
            run([sys.executable, "-m", "spacy_knowfree", "convert",
                 f"assets/sample/{split}.jsonl", str(corpus / f"{split}.spacy"), "--format", "jsonl"])
    return corpus


def train(system: str, corpus: Path, workdir: Path, epochs: int) -> Dict:
    out = workdir / system
    start = time.perf_counter()
    run([sys.executable, "-m", "spacy", "train", SYSTEMS[system], "--output", str(out),
         "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
         "--training.max_epochs", str(epochs), "--training.max_steps", "0",
         "--training.eval_frequency", "100000", "--nlp.batch_size", "64"])
    seconds = time.perf_counter() - start
    return {"model": out / "model-last", "seconds_per_epoch": seconds / epochs}


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()}"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs" / "speed")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--length", type=int, action="append", default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "speed.md")
    args = parser.parse_args(argv)
    lengths = args.length or LENGTHS
    corpus = prepare(args.workdir)
    results: Dict[str, Dict] = {}
    for system in SYSTEMS:
        print(f"[{system}] training", flush=True)
        trained = train(system, corpus, args.workdir, args.epochs)
        res = {"train_s_per_epoch": trained["seconds_per_epoch"]}
        for threads in (1, 2):
            print(f"[{system}] inference, {threads} thread(s)", flush=True)
            res[f"chars_per_s_{threads}"] = child("speed", trained["model"],
                                                  str(corpus / "test.spacy"), threads)["chars_per_s"]
        for length in lengths:
            print(f"[{system}] memory, {length} characters", flush=True)
            res[f"mem_{length}"] = child("memory", trained["model"], str(length), 2)
        results[system] = res
    def ratio(key: str, sub: Optional[str] = None) -> str:
        a, b = results["knowfree"][key], results["spancat"][key]
        if sub:
            a, b = a[sub], b[sub]
        return f"{a / b:.2f}" if b else "n/a"

    rows = [
        ("inference chars/s, 1 thread", "chars_per_s_1", None, "{:.0f}"),
        ("inference chars/s, 2 threads", "chars_per_s_2", None, "{:.0f}"),
        ("training s/epoch (sample, 160 sentences)", "train_s_per_epoch", None, "{:.1f}"),
    ]
    for length in lengths:
        rows.append((f"peak MB above loaded pipeline, {length} chars", f"mem_{length}", "peak_mb", "{:.0f}"))
        rows.append((f"seconds for one doc of {length} chars", f"mem_{length}", "seconds", "{:.2f}"))
    lines = [
        "# Speed and memory: knowfree vs spancat (same character tokens, same CNN tok2vec)",
        "",
        f"- command: `python {' '.join(['benchmarks/speed.py', *(argv if argv is not None else sys.argv[1:])])}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- versions: {versions()}",
        f"- machine: {machine()}",
        f"- models: trained {args.epochs} epochs on assets/sample; knowfree max_span_width 32, "
        "spancat ngram suggester 1..32",
        "",
        "| measure | knowfree | spancat | knowfree/spancat |",
        "|---|---:|---:|---:|",
    ]
    for label, key, sub, fmt in rows:
        a = results["knowfree"][key][sub] if sub else results["knowfree"][key]
        b = results["spancat"][key][sub] if sub else results["spancat"][key]
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio(key, sub)} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf8")
    (args.output.with_suffix(".json")).write_text(json.dumps(results, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

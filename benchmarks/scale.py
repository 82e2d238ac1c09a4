"""Scaling of batch inference: ``knowfree apply`` with the local engine at 1
and 2 processes and the Ray engine with 1 and 2 actors, on this machine.

Trains a knowfree pipeline briefly on the embedded sample with
``configs/knowfree_zh_cpu.cfg`` (speed does not depend on how well it is
trained), builds a synthetic corpus of a fixed number of characters from the
sample sentences, and applies the pipeline to it once per setting, each in a
fresh process, every worker with one torch thread. For each setting it
reports the end-to-end chars/s (pipeline loading and Ray start included) and
the steady chars/s, measured between the first and the last shard written
(from the shard files' modification times); the speed-up over one local
process; and the overhead of Ray against the local engine at equal
parallelism. It checks that all settings wrote identical shards, and ends
with the throughput to expect on a cluster, sized from the measured steady
per-actor throughput.

    nice -n 10 python benchmarks/scale.py            # -> benchmarks/results/scale.md
"""

import argparse
import filecmp
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name, versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "knowfree_zh_cpu.cfg"
#: (name, engine, workers)
SETTINGS = [
    ("local, 1 process", "local", 1),
    ("local, 2 processes", "local", 2),
    ("ray, 1 actor", "ray", 1),
    ("ray, 2 actors", "ray", 2),
]
CLUSTER_ACTORS = [8, 32, 128, 512]


def run(cmd: List[str]) -> str:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def train_model(workdir: Path, epochs: int) -> Path:
    """A knowfree pipeline trained for ``epochs`` on the sample (kept between runs)."""
    model = workdir / "model" / "model-last"
    if model.exists():
        return model
    corpus = workdir / "corpus"
    for split in ("train", "dev"):
        run(
            [
                sys.executable,
                "-m",
                "spacy_knowfree",
                "convert",
                f"assets/sample/{split}.jsonl",
                str(corpus / f"{split}.spacy"),
                "--format",
                "jsonl",
            ]
        )
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(CONFIG),
            "--output",
            str(workdir / "model"),
            "--paths.train",
            str(corpus / "train.spacy"),
            "--paths.dev",
            str(corpus / "dev.spacy"),
            "--training.max_epochs",
            str(epochs),
            "--training.max_steps",
            "0",
            "--training.eval_frequency",
            "100000",
        ]
    )
    return model


def make_corpus(path: Path, chars: int) -> Dict[str, int]:
    """Sample sentences, numbered so none repeats, one a line, until ``chars``."""
    sentences = []
    for split in ("train", "dev", "test"):
        for line in (ROOT / "assets" / "sample" / f"{split}.jsonl").open(encoding="utf8"):
            sentences.append("".join(json.loads(line)["text"]))
    lines, total, i = [], 0, 0
    while total < chars:
        text = f"{sentences[i % len(sentences)]}{i // len(sentences)}"
        lines.append(text)
        total += len(text)
        i += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return {"docs": len(lines), "chars": total}


def child(config: Dict[str, Any]) -> None:
    """One setting in this (fresh) process: apply, then print the timings as JSON."""
    from spacy_knowfree.scaling import apply_model

    start = time.time()
    workers = config["workers"]
    summary = apply_model(
        config["model"],
        config["corpus"],
        config["output"],
        engine=config["engine"],
        shard_size=config["shard_size"],
        batch_size=config["batch_size"],
        threads=1,
        n_process=workers if config["engine"] == "local" else 1,
        num_actors=workers,
        ray_init={"num_cpus": os.cpu_count(), "object_store_memory": 200 * 2**20},
        progress=False,
    )
    shards = sorted(Path(config["output"]).glob("*.spacy"), key=lambda p: p.stat().st_mtime)
    times = [p.stat().st_mtime - start for p in shards]
    print(json.dumps({**summary.as_dict(), "shard_times": times}))


def steady_rate(result: Dict[str, Any], chars_per_shard: float) -> float:
    """chars/s between the first and the last shard written."""
    times = result["shard_times"]
    if len(times) < 3 or times[-1] <= times[0]:
        return result["chars_per_s"]
    return chars_per_shard * (len(times) - 1) / (times[-1] - times[0])


def driver_rate(output: Path, workdir: Path) -> float:
    """chars/s of the driver's own work per shard: decoding the DocBin bytes
    an actor returns and writing the shard file (measured on the shards of a run)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from spacy_knowfree.docbin_io import write_docbin

    payloads = [p.read_bytes() for p in sorted(output.glob("*.spacy"))]
    vocab = Vocab()
    start = time.perf_counter()
    chars = 0
    for i, payload in enumerate(payloads):
        docs = list(DocBin().from_bytes(payload).get_docs(vocab))
        chars += sum(len(doc.text) for doc in docs)
        write_docbin(docs, workdir / "driver_check" / f"{i:05d}.spacy")
    return chars / (time.perf_counter() - start)


def same_shards(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.spacy"))
    return names == sorted(p.name for p in b.glob("*.spacy")) and all(
        filecmp.cmp(a / n, b / n, shallow=False) for n in names
    )


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chars", type=int, default=60_000, help="size of the synthetic corpus")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs" / "scale")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "scale.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return
    model = train_model(args.workdir, args.epochs)
    corpus = args.workdir / f"corpus_{args.chars}.txt"
    size = make_corpus(corpus, args.chars)
    n_shards = -(-size["docs"] // args.shard_size)
    results: Dict[str, Dict[str, Any]] = {}
    load_before = os.getloadavg()
    for name, engine, workers in SETTINGS:
        output = args.workdir / "out" / f"{engine}{workers}"
        if output.exists():
            subprocess.run(["rm", "-rf", str(output)], check=True)
        config = {
            "model": str(model),
            "corpus": str(corpus),
            "output": str(output),
            "engine": engine,
            "workers": workers,
            "shard_size": args.shard_size,
            "batch_size": args.batch_size,
        }
        print(f"[{name}]", flush=True)
        out = run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(config)])
        result = json.loads(out.strip().splitlines()[-1])
        result["steady"] = steady_rate(result, result["chars"] / n_shards)
        result["output"] = str(output)
        results[name] = result
        print(f"  {result['chars_per_s']:.0f} chars/s end to end, {result['steady']:.0f} steady", flush=True)
    load_after = os.getloadavg()
    base = results["local, 1 process"]
    identical = all(same_shards(Path(base["output"]), Path(r["output"])) for r in results.values())
    driver = driver_rate(Path(results["ray, 2 actors"]["output"]), args.workdir)
    results["driver"] = {"chars_per_s": driver}
    lines = report(args, argv, size, n_shards, results, identical, load_before, load_after)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n", encoding="utf8")
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf8")
    print("\n".join(lines))


def report(
    args: argparse.Namespace,
    argv: Optional[List[str]],
    size: Dict[str, int],
    n_shards: int,
    results: Dict[str, Dict[str, Any]],
    identical: bool,
    load_before: Any,
    load_after: Any,
) -> List[str]:
    """The markdown report: measurements, then the expected cluster scaling."""
    base = results["local, 1 process"]
    command = " ".join(["benchmarks/scale.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Scaling of batch inference: knowfree apply, local engine vs Ray Data",
        "",
        f"- command: `nice -n 10 python {command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- versions: {versions()}, Ray {_ray_version()}",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (the cores are shared with other jobs)",
        f"- model: `configs/knowfree_zh_cpu.cfg` trained {args.epochs} epoch(s) on assets/sample",
        f"- corpus: {size['docs']} synthetic sentences, {size['chars']} characters; {n_shards} shards of "
        f"{args.shard_size} docs; batch size {args.batch_size}; one torch thread per process or actor",
        f"- output identical across all four settings (shard files byte for byte): {'yes' if identical else 'NO'}",
        "",
        "| setting | wall s | chars/s end to end | steady chars/s | speed-up (steady) vs local, 1 process |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if name == "driver":
            continue
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {r['chars_per_s']:.0f} | {r['steady']:.0f} | "
            f"{r['steady'] / base['steady']:.2f} |"
        )
    lines += ["", "Overhead of Ray against the local engine at equal parallelism:", ""]
    lines += [
        "| workers | local wall s | Ray wall s | extra wall s | Ray steady / local steady |",
        "|---:|---:|---:|---:|---:|",
    ]
    for workers, local, ray in [(1, "local, 1 process", "ray, 1 actor"), (2, "local, 2 processes", "ray, 2 actors")]:
        a, b = results[local], results[ray]
        lines.append(
            f"| {workers} | {a['seconds']:.1f} | {b['seconds']:.1f} | {b['seconds'] - a['seconds']:+.1f} | "
            f"{b['steady'] / a['steady']:.2f} |"
        )
    per_actor = results["ray, 1 actor"]["steady"]
    efficiency = results["ray, 2 actors"]["steady"] / (2 * per_actor)
    startup = results["ray, 2 actors"]["seconds"] - size["chars"] / results["ray, 2 actors"]["steady"]
    lines += [
        "",
        "## Expected scaling on a cluster",
        "",
        f"Sized from the measured steady throughput of one actor with one thread, {per_actor:.0f} chars/s. "
        f"Every actor holds its own pipeline and works on whole batches, with no communication between "
        f"actors, so throughput grows with the number of actors as long as each has a core of its own; on "
        f"this 2-core machine two actors reached {efficiency:.0%} of twice the one-actor rate (the cores are "
        "shared with other jobs, so this is a lower bound). The table assumes one actor per physical core, "
        f"{efficiency:.0%} parallel efficiency and a fixed start-up of about {max(startup, 0):.0f} s "
        "(Ray start, actor creation, pipeline loading: measured here for 2 actors; on a cluster add the "
        "time to schedule actors on the nodes).",
        "",
        "| actors (1 thread each) | expected chars/s | drivers needed | 10^8 characters in |",
        "|---:|---:|---:|---:|",
    ]
    driver = results["driver"]["chars_per_s"]
    for actors in CLUSTER_ACTORS:
        rate = actors * per_actor * efficiency
        lines.append(
            f"| {actors} | {rate:,.0f} | {-(-rate // driver):.0f} | {_duration(1e8 / rate + max(startup, 0))} |"
        )
    lines += [
        "",
        "The driver reads the inputs, sends every batch to the actors, and decodes and writes every "
        f"shard itself, in one process; that part ran at {driver:,.0f} chars/s here (decoding the "
        "DocBin bytes an actor returns and writing the shard), so one driver keeps up with about "
        f"{driver / per_actor:.0f} CPU actors. Most of that time is srsly's msgpack decoding of each "
        "doc's span group, which looks its extensions up among the installed entry points on every "
        "call (about 3 ms per doc in a profile). Past that, split the corpus (by files) over several "
        "drivers on the same cluster: the 'drivers needed' column. The local engine pays this cost "
        "between batches, in the processes that compute; Ray's driver pays it while the actors "
        "compute, which counts for Ray in the steady rates above. The driver also holds the pending input text in memory while the run lasts, and the model path must "
        "exist on every node. A GPU actor (`--gpu`) does the work of many CPU actors; its rate is not "
        "measured here.",
    ]
    return lines


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _ray_version() -> str:
    try:
        import ray
    except ImportError:
        return "not installed"
    return ray.__version__


if __name__ == "__main__":
    main()

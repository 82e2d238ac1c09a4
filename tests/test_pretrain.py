"""Pretraining the CPU configs' tok2vec on raw text (spacy pretrain), then
training from it (--paths.init_tok2vec), for knowfree and the spancat and ner
baselines (ner listens to a tok2vec component, which spacy pretrain reaches)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.util import fix_random_seed, load_config, load_model_from_config

from spacy_knowfree.docbin_io import write_docbin

from _examples import FLAT, make_examples

CONFIGS = Path(__file__).resolve().parents[1] / "spacy_knowfree" / "configs"
RAW_TEXT = [text for text, _ in FLAT] + ["北京和上海都是大城市。", "王五在腾讯公司工作了三年。", "今天的天气很好。"]
SMALL = {"vars.tok2vec_width": 32, "pretraining.max_epochs": 2, "pretraining.batcher.size": 50}


def _examples(nlp) -> list:
    """FLAT with its spans also as doc.ents (what the ner baseline learns from)."""
    examples = make_examples(nlp, FLAT)
    for eg in examples:
        eg.reference.ents = list(eg.reference.spans["sc"])
    return examples


def _tok2vec_params(nlp, component: str) -> list:
    model = nlp.get_pipe(component).model
    tok2vec = model if component == "tok2vec" else model.get_ref("tok2vec")
    return [node.get_param(name).copy() for node in tok2vec.walk() for name in node.param_names if node.has_param(name)]


@pytest.mark.parametrize(
    "name,component",
    [
        ("knowfree_zh_cpu.cfg", "knowfree"),
        ("spancat_zh_cpu.cfg", "spancat"),
        ("ner_zh_cpu.cfg", "tok2vec"),
    ],
)
def test_pretrained_tok2vec_is_where_training_starts(tmp_path, name, component):
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in RAW_TEXT * 4), "utf8")
    overrides = [arg for key, value in SMALL.items() for arg in (f"--{key}", str(value))]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "pretrain",
            str(CONFIGS / name),
            str(tmp_path / "pretrain"),
            "--paths.raw_text",
            str(raw),
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    weights = sorted((tmp_path / "pretrain").glob("model*.bin"))
    assert weights, result.stdout[-2000:]

    def build(init_tok2vec=None):
        overrides = {key: value for key, value in SMALL.items() if key.startswith("vars.")}
        if init_tok2vec is not None:
            overrides["paths.init_tok2vec"] = str(init_tok2vec)
        nlp = load_model_from_config(
            load_config(CONFIGS / name, overrides=overrides, interpolate=True), auto_fill=True, validate=True
        )
        fix_random_seed(0)
        nlp.initialize(lambda: _examples(nlp))
        return nlp

    fresh, pretrained = build(), build(weights[-1])
    before = _tok2vec_params(fresh, component)
    after = _tok2vec_params(pretrained, component)
    assert len(before) == len(after) > 0
    assert any(not numpy.array_equal(a, b) for a, b in zip(before, after))  # the weights were loaded
    # and spacy train starts from them without complaint
    write_docbin([eg.reference for eg in _examples(spacy.blank("zh"))], tmp_path / "train.spacy")
    trained = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(CONFIGS / name),
            "--output",
            str(tmp_path / "model"),
            "--paths.train",
            str(tmp_path / "train.spacy"),
            "--paths.dev",
            str(tmp_path / "train.spacy"),
            "--paths.init_tok2vec",
            str(weights[-1]),
            "--vars.tok2vec_width",
            "32",
            "--training.max_steps",
            "4",
            "--training.eval_frequency",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert (tmp_path / "model" / "model-last").exists()


def test_benchmark_unlabeled_text_is_the_pool_minus_the_kshot_subset(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import accuracy

    nlp = spacy.blank("zh")
    pool = [eg.reference for eg in make_examples(nlp, FLAT)] + [nlp(FLAT[0][0])]  # a repeat of doc 0
    path = tmp_path / "unlabeled_2.jsonl"
    assert accuracy.write_unlabeled(pool, [0, 2], path) == 3
    lines = [json.loads(line) for line in path.read_text("utf8").splitlines()]
    assert lines == [{"text": FLAT[1][0]}, {"text": FLAT[3][0]}, {"text": FLAT[4][0]}]  # no K text, no spans
    assert accuracy.SYSTEMS["knowfree+lexicon+pretrain"] == ("configs/knowfree_zh_cpu.cfg", "_fused")

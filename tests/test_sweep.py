"""benchmarks/sweep.py: dev scores only, resumable."""

import json
import sys
from pathlib import Path

import pytest
import spacy

from spacy_knowfree.docbin_io import write_docbin

from _examples import FLAT

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import sweep  # noqa: E402

TINY = "max_steps=3;tok2vec_width=32;hidden_width=16;grid_width=20;depth=1"


def test_settings_parse_and_have_one_spelling():
    assert sweep.parse_setting("defaults") == {}
    assert sweep.parse_setting("alpha=0.5; dropout=0.2") == {
        "components.knowfree.alpha": "0.5",
        "components.knowfree.model.dropout": "0.2",
    }
    assert sweep.canonical("dropout=0.2;alpha=0.5") == sweep.canonical("alpha=0.5;dropout=0.2")
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        sweep.parse_setting("alpha")


def test_encoder_and_train_are_run_options_with_defaults_left_out_of_the_key():
    overrides, options = sweep.split_setting("encoder=char_ngram_words;train=fused;alpha=0.5")
    assert overrides == {"components.knowfree.alpha": "0.5"}
    assert options == {"encoder": "char_ngram_words", "train": "fused"}
    assert sweep.split_setting("defaults")[1] == {"encoder": "hash", "train": "plain"}
    assert sweep.canonical("encoder=hash;train=plain;alpha=0.5") == sweep.canonical("alpha=0.5")
    assert sweep.canonical("train=fused;encoder=char_ngram") == "encoder=char_ngram;train=fused"
    with pytest.raises(SystemExit, match="encoder must be one of"):
        sweep.split_setting("encoder=bert")


def test_encoder_variant_configs_build_the_embedding_they_name(tmp_path):
    # the packaged configs without the CRF peer (as the sweep trains them, and
    # every benchmark system before it adds the peer back)
    config = sweep.without_crf_tags(sweep.ROOT / "configs" / "knowfree_zh_cpu.cfg", tmp_path / "bare")
    # the packaged configs' own encoder is char_ngram_words_tags: no variant is written
    assert sweep.encoder_config(config, "char_ngram_words_tags", tmp_path) == config
    for name in ("spancat_zh_cpu.cfg", "ner_zh_cpu.cfg"):  # the baselines swap their own component's block
        own = sweep.without_crf_tags(sweep.ROOT / "configs" / name, tmp_path / "bare")
        assert sweep.encoder_config(own, "char_ngram_words_tags", tmp_path) == own
        variant = sweep.encoder_config(own, "hash", tmp_path)
        assert variant != own
        spacy.util.load_model_from_config(
            spacy.util.load_config(variant, interpolate=True), auto_fill=True, validate=True
        )
    expected = {
        "hash": ("spacy.MultiHashEmbed.v2", None, None),
        "char_ngram": ("spacy-knowfree.CharNgramEmbed.v1", False, False),
        "char_ngram_words": ("spacy-knowfree.CharNgramEmbed.v1", True, False),
        "char_ngram_words_tags": ("spacy-knowfree.CharNgramEmbed.v1", True, True),
    }
    for encoder, (architecture, words, tags) in expected.items():
        variant = sweep.encoder_config(config, encoder, tmp_path)
        loaded = spacy.util.load_config(variant, interpolate=True)
        embed = loaded["components"]["knowfree"]["model"]["tok2vec"]["embed"]
        assert embed["@architectures"] == architecture
        nlp = spacy.util.load_model_from_config(loaded, auto_fill=True, validate=True)
        features = [node for node in nlp.get_pipe("knowfree").model.walk() if node.name == "char_ngram_features"]
        if words is None:
            assert not features
        else:
            assert embed["word_boundaries"] is words
            assert features[0].attrs["word_boundaries"] is words
            assert features[0].attrs["word_tags"] is tags


def test_sweep_reads_no_test_file_and_resumes(tmp_path, monkeypatch):
    nlp = spacy.blank("zh")
    corpus = tmp_path / "runs" / "corpus" / "tiny"
    docs = []
    for text, spans in FLAT:
        doc = nlp.make_doc(text)
        doc.spans["sc"] = [doc.char_span(s, e, label=label) for s, e, label in spans]
        docs.append(doc)
    for name in ("train_250", "dev", "test"):
        write_docbin(docs, corpus / f"{name}.spacy")
    commands = []
    real_run = sweep.run

    def recording_run(cmd, log, on_device=True):
        commands.append(cmd)
        return real_run(cmd, log, on_device)

    monkeypatch.setattr(sweep, "run", recording_run)
    log = tmp_path / "sweep_runs.jsonl"
    argv = [
        "--dataset",
        "tiny",
        "--workdir",
        str(tmp_path / "runs"),
        "--runs-log",
        str(log),
        "--output",
        str(tmp_path / "sweep.md"),
        "--eval-frequency",
        "1",
        "--setting",
        TINY,
        "--setting",
        TINY + ";alpha=0.5",
    ]
    sweep.main(argv)
    assert len(commands) == 2
    for cmd in commands:
        assert not any("test" in Path(part).name for part in cmd if part.endswith(".spacy")), cmd
        assert str(corpus / "dev.spacy") in cmd
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["setting"] for r in records) == sorted(
        [sweep.canonical(TINY), sweep.canonical(TINY + ";alpha=0.5")]
    )
    assert all(set(r["dev"]) == {"p", "r", "f"} and "test" not in r for r in records)
    table = (tmp_path / "sweep.md").read_text()
    assert "components.knowfree.alpha=0.5" in table
    # a second call trains nothing and keeps the log as it was
    before = log.read_text()
    sweep.main(argv)
    assert len(commands) == 2
    assert log.read_text() == before

"""benchmarks/accuracy.py's opt-in systems: the training files of the ones
that learn from unlabeled text (knowfree+lexicon+unlabeled,
knowfree+lexicon+selftrain), the band width of knowfree+lexicon+auto_width and
the optimizer of the systems with and without averages."""

import json
import sys
from pathlib import Path

import spacy

from spacy_knowfree.constants import EXTENSION_SPANS_KEY, SYNTHETIC_FLAG, UNLABELED_FLAG
from spacy_knowfree.docbin_io import read_docbin, write_docbin
from spacy_knowfree.layers.span_grid import auto_span_width

from _examples import FLAT, make_examples

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import accuracy  # noqa: E402

TINY = [
    "--vars.tok2vec_width",
    "32",
    "--components.knowfree.model.hidden_width",
    "16",
    "--components.knowfree.model.grid_width",
    "20",
    "--components.knowfree.model.tok2vec.encode.depth",
    "1",
]
UNLABELED = ["孙八在广州工作。", "周九去了杭州。", "今天下雨了"]


def _cell(tmp_path: Path) -> Path:
    """A benchmark cell of K=5: the fusion samples, dev/test and 3 unlabeled texts."""
    nlp = spacy.blank("zh")
    corpus = tmp_path / "runs" / "corpus" / "tiny"
    docs = [eg.reference for eg in make_examples(nlp, FLAT)]
    for name in ("train_5_fused", "dev", "test"):
        write_docbin(docs, corpus / f"{name}.spacy")
    accuracy.write_unlabeled(docs + [nlp(text) for text in UNLABELED], range(len(docs)), corpus / "unlabeled_5.jsonl")
    return corpus


def test_unlabeled_system_adds_the_extended_text_without_targets(tmp_path):
    corpus = _cell(tmp_path)
    train = corpus / "train_5_fused.spacy"
    out = tmp_path / "runs" / "tiny" / "k5" / "knowfree_lexicon_unlabeled" / "seed0"

    def no_teacher(*args):
        raise AssertionError("+unlabeled trains no teacher")

    combined, added = accuracy.with_unlabeled_text(
        "knowfree+lexicon+unlabeled", train, corpus, "5", 0, out, "char_ngram_words", no_teacher
    )
    assert accuracy.uses_unlabeled_text("knowfree+lexicon+unlabeled")
    docs = read_docbin(combined)
    assert [doc.text for doc in docs] == [text for text, _ in FLAT] + UNLABELED
    for doc in docs[: len(FLAT)]:  # the fusion samples as they were
        assert not doc.user_data.get(UNLABELED_FLAG)
    assert sum(len(doc.spans["sc"]) for doc in docs[: len(FLAT)]) == sum(len(spans) for _, spans in FLAT)
    for doc in docs[len(FLAT) :]:  # the unlabeled text: lexicon knowledge, no target spans
        assert doc.user_data[UNLABELED_FLAG] is True
        assert len(doc.spans[EXTENSION_SPANS_KEY]) > 0
        assert len(doc.spans.get("sc", [])) == 0
    assert accuracy.unlabeled_text.describe(added)["docs"] == len(UNLABELED)
    # built once per cell: a second system run reuses the file
    stamp = combined.stat().st_mtime_ns
    again, _ = accuracy.with_unlabeled_text(
        "knowfree+lexicon+unlabeled", train, corpus, "5", 1, out, "char_ngram_words", no_teacher
    )
    assert again == combined and combined.stat().st_mtime_ns == stamp
    # the share systems read the same file, with the labeled docs up-sampled
    shared, _ = accuracy.with_unlabeled_text(
        "knowfree+lexicon+unlabeled+share50", train, corpus, "5", 0, out, "char_ngram_words", no_teacher
    )
    assert shared == combined and accuracy.uses_unlabeled_text("knowfree+lexicon+unlabeled+share50")
    assert accuracy.SYSTEM_OVERRIDES["knowfree+lexicon+unlabeled+share50"] == ["--corpora.train.labeled_share", "0.5"]
    assert not accuracy.uses_unlabeled_text("knowfree+lexicon+auto_width")


def test_selftrain_system_trains_its_teacher_once_and_adds_its_pseudo_labels(tmp_path):
    corpus = _cell(tmp_path)
    train = corpus / "train_5_fused.spacy"
    out = tmp_path / "runs" / "tiny" / "k5" / "knowfree_lexicon_selftrain__char_ngram_words" / "seed0"
    teachers = []

    def teacher_run(system: str, teacher_out: Path):
        teachers.append((system, teacher_out))
        config = str(accuracy.ROOT / accuracy.SYSTEMS[system][0])
        return accuracy.train_on(config, train, corpus, 0, teacher_out, 4, 2, 0, extra=TINY)

    combined, added = accuracy.with_unlabeled_text(
        "knowfree+lexicon+selftrain", train, corpus, "5", 0, out, "char_ngram_words", teacher_run
    )
    teacher_dir = accuracy.run_dir(tmp_path / "runs", "tiny", "5", "knowfree+lexicon", "char_ngram_words", 0)
    assert teachers == [("knowfree+lexicon", teacher_dir)]
    assert (teacher_dir / "metrics.json").exists()  # the teacher is a recorded knowfree+lexicon run
    docs = read_docbin(combined)
    assert [doc.text for doc in docs] == [text for text, _ in FLAT] + UNLABELED
    for doc in docs[len(FLAT) :]:  # pseudo-labeled: synthetic (weight beta), lexicon knowledge
        assert doc.user_data[SYNTHETIC_FLAG] is True
        assert not doc.user_data.get(UNLABELED_FLAG)
        assert len(doc.spans[EXTENSION_SPANS_KEY]) > 0
        assert all(span.label_ in {"PER", "LOC", "ORG"} for span in doc.spans.get("sc", []))
    info = accuracy.unlabeled_text.describe(added)
    assert info["docs"] == len(UNLABELED) and info["pseudo_label"]["min_confidence"] == 0.9


def test_the_packaged_band_is_auto_and_older_knowfree_systems_keep_32(tmp_path):
    assert accuracy.system_overrides("knowfree+lexicon+auto_width") == [
        *accuracy.LEGACY_EVIDENCE,
        *accuracy.LEGACY_AVERAGES,
        "--vars.max_span_width",
        "auto",
    ]
    assert accuracy.system_overrides("knowfree+lexicon+unlabeled+share50") == [
        *accuracy.LEGACY_WIDTH,
        *accuracy.LEGACY_EVIDENCE,
        *accuracy.LEGACY_AVERAGES,
        "--corpora.train.labeled_share",
        "0.5",
    ]
    assert accuracy.system_overrides("spancat") == accuracy.system_overrides("crf") == []
    corpus = _cell(tmp_path)
    config = str(accuracy.system_config("knowfree+lexicon+auto_width", accuracy.DEFAULT_ENCODER, tmp_path / "cfg"))
    out = tmp_path / "run"
    accuracy.train_on(config, corpus / "train_5_fused.spacy", corpus, 0, out, 4, 2, 0, extra=TINY)
    longest = max(end - start for _, spans in FLAT for start, end, _ in spans)
    width = accuracy.trained_span_width(out / "model" / "model-best")
    assert width == auto_span_width([longest]) < 32  # the config's own "auto": 4 characters -> 8
    legacy = tmp_path / "legacy"
    extra = TINY + accuracy.system_overrides("knowfree+lexicon")
    accuracy.train_on(config, corpus / "train_5_fused.spacy", corpus, 0, legacy, 4, 2, 0, extra=extra)
    assert accuracy.trained_span_width(legacy / "model" / "model-best") == 32


def _resolved(system: str, directory: Path) -> spacy.util.Config:
    """The config a run of ``system`` trains with (its overrides applied)."""
    overrides = accuracy.system_overrides(system)
    pairs = dict(zip(overrides[::2], overrides[1::2]))
    parsed = {key[2:]: json.loads(value) if value in ("true", "false") else value for key, value in pairs.items()}
    config = accuracy.system_config(system, accuracy.DEFAULT_ENCODER, directory / system.replace("+", "_"))
    return spacy.util.load_config(config, overrides=parsed)


def test_the_default_systems_are_the_packaged_configs_and_older_rows_keep_theirs(tmp_path):
    """The default systems train exactly the packaged configs (0.8.0: with the
    CRF peer); a knowfree or ner system without ``averages`` in its name keeps
    averaging off, a knowfree system without ``token_evidence`` keeps that term
    off, and a system without ``crf_tags`` has no CRF peer, as their rows were
    measured, whatever the packaged config says."""
    for system in accuracy.DEFAULT_SYSTEMS[:-1]:
        packaged = spacy.util.load_config(accuracy.ROOT / accuracy.SYSTEMS[system][0])
        assert _resolved(system, tmp_path) == packaged
        assert packaged["nlp"]["pipeline"][0] == "knowfree_crf"
    assert accuracy.DEFAULT_SYSTEMS[-1] == "crf"
    packaged = spacy.util.load_config(accuracy.ROOT / "configs" / "knowfree_zh_cpu.cfg")
    assert packaged["training"]["optimizer"]["use_averages"] is True
    assert packaged["components"]["knowfree"]["model"]["token_evidence"] is True
    for system in ("knowfree+lexicon+auto_width", "knowfree+lexicon", "knowfree", "ner", "ner+pretrain"):
        assert _resolved(system, tmp_path)["training"]["optimizer"]["use_averages"] is False
    for system in ("knowfree+lexicon+auto_width+averages", "knowfree+lexicon", "knowfree+lexicon+pretrain"):
        assert _resolved(system, tmp_path)["components"]["knowfree"]["model"]["token_evidence"] is False
    ner = spacy.util.load_config(accuracy.ROOT / "configs" / "ner_zh_cpu.cfg")
    assert _resolved("ner+averages", tmp_path)["training"]["optimizer"] == ner["training"]["optimizer"]
    assert ner["training"]["optimizer"]["use_averages"] is True
    for system in ("knowfree+lexicon+auto_width+averages+token_evidence", "spancat", "ner+averages"):
        config = _resolved(system, tmp_path)
        assert "knowfree_crf" not in config["nlp"]["pipeline"] and "knowfree_crf" not in config["components"]
        assert config["training"]["annotating_components"] == []
        assert "crf_tags" not in str(config["components"])
    # a crf_tags system differs from the one without it by the CRF peer alone
    with_peer = _resolved("spancat+crf_tags", tmp_path)
    bare = _resolved("spancat", tmp_path)
    del (
        with_peer["components"]["knowfree_crf"],
        with_peer["components"]["spancat"]["model"]["tok2vec"]["embed"]["crf_tags"],
    )
    with_peer["nlp"]["pipeline"].remove("knowfree_crf")
    with_peer["training"]["annotating_components"].remove("knowfree_crf")
    assert with_peer == bare


def test_report_only_records_the_dev_f1_of_logged_runs_that_lack_it(tmp_path):
    workdir, log = tmp_path / "runs", tmp_path / "runs.jsonl"
    encoder = "char_ngram_words"
    key = {"dataset": "weibo", "k": "250", "system": "knowfree+lexicon", "encoder": encoder}
    records = [{**key, "seed": seed, "p": 0.5, "r": 0.5, "f": 0.5, "train_seconds": 9.0} for seed in (0, 1)]
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    best = accuracy.run_dir(workdir, "weibo", "250", "knowfree+lexicon", encoder, 0) / "model" / "model-best"
    best.mkdir(parents=True)
    (best / "meta.json").write_text(json.dumps({"performance": {"spans_sc_f": 0.4321}}), encoding="utf8")
    argv = ["--report-only", "--dataset", "weibo", "--k", "250", "--system", "knowfree+lexicon"]
    argv += ["--seed", "0", "--seed", "1", "--encoder", encoder, "--workdir", str(workdir)]
    accuracy.main([*argv, "--runs-log", str(log), "--output", str(tmp_path / "table.md")])
    logged = accuracy.read_runs_log(log)
    assert logged[("weibo", "250", "knowfree+lexicon", encoder, 0)]["dev_f"] == 0.4321
    assert "dev_f" not in logged[("weibo", "250", "knowfree+lexicon", encoder, 1)]  # no model-best: nothing to read
    assert logged[("weibo", "250", "knowfree+lexicon", encoder, 0)]["f"] == 0.5  # the rest as it was


def test_crf_tags_systems_train_with_the_crf_peer_annotating(tmp_path):
    system = "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags"
    assert accuracy.system_overrides(system) == accuracy.system_overrides(system.rsplit("+", 1)[0])
    for name in (system, "spancat+crf_tags", "ner+averages+crf_tags"):
        cfg = spacy.util.load_config(accuracy.system_config(name, accuracy.DEFAULT_ENCODER, tmp_path / name))
        assert cfg["nlp"]["pipeline"][0] == "knowfree_crf"
        assert cfg["training"]["annotating_components"] == ["knowfree_crf"]
        embed = cfg["components"]["tok2vec" if name.startswith("ner") else name.split("+")[0]]["model"]
        assert (embed["embed"] if name.startswith("ner") else embed["tok2vec"]["embed"])["crf_tags"] is True
    # the encoder of an older row, with the CRF peer added back
    hashed = accuracy.system_config("spancat+crf_tags", "char_ngram", tmp_path / "hashed")
    embed = spacy.util.load_config(hashed)["components"]["spancat"]["model"]["tok2vec"]["embed"]
    assert embed["word_boundaries"] is False and embed["crf_tags"] is True
    corpus = _cell(tmp_path)
    config = accuracy.system_config(system, accuracy.DEFAULT_ENCODER, tmp_path / "cfg")
    out = tmp_path / "run"
    accuracy.train_on(str(config), corpus / "train_5_fused.spacy", corpus, 0, out, 4, 2, 0, extra=TINY)
    loaded = spacy.load(out / "model" / "model-best")
    assert loaded.pipe_names == ["knowfree_crf", "knowfree"]
    assert len(loaded("张三在北京工作。").user_data["knowfree_crf_tags"]) == 8


def test_tuned_threshold_systems_reuse_the_trained_model_and_tune_it_on_dev(tmp_path, monkeypatch):
    corpus = _cell(tmp_path)
    workdir = tmp_path / "runs"
    base = "knowfree+lexicon+auto_width+averages+token_evidence+crf_tags"
    system = base + "+tuned_threshold"
    assert accuracy.SYSTEMS[system] == accuracy.SYSTEMS[base]
    encoder = accuracy.DEFAULT_ENCODER
    base_out = accuracy.run_dir(workdir, "tiny", "5", base, encoder, 0)
    config = accuracy.system_config(base, encoder, tmp_path / "cfg")
    accuracy.train_on(str(config), corpus / "train_5_fused.spacy", corpus, 0, base_out, 6, 3, 0, extra=TINY)

    real_run = accuracy.run

    def no_training(cmd, *args, **kwargs):
        assert "train" not in cmd, "a tuned_threshold system trains nothing: it reuses its base's run"
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(accuracy, "run", no_training)
    out = accuracy.run_dir(workdir, "tiny", "5", system, encoder, 0)
    metrics = accuracy.train_and_evaluate(system, corpus, "5", 0, out, 6, 3, 0, encoder)
    sweep = json.loads((out / "threshold.json").read_text(encoding="utf8"))
    tuned = spacy.load(out / "model" / "model-best")
    assert tuned.get_pipe("knowfree").cfg["threshold"] == metrics["threshold"] == sweep["best"]["threshold"]
    assert metrics["dev_f"] == sweep["best"]["f"] and metrics["held_out_gain"] == sweep["held_out"]["gain"]
    assert metrics["f"] == json.loads((out / "evaluate.json").read_text(encoding="utf8"))["spans_sc_f"]
    trained = json.loads((base_out / "metrics.json").read_text(encoding="utf8"))
    assert metrics["train_seconds"] > trained["train_seconds"] and metrics["max_steps"] == 6
    assert accuracy.train_and_evaluate(system, corpus, "5", 0, out, 6, 3, 0, encoder) == metrics  # cached

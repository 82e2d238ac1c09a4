"""``knowfree init config`` / ``init extend-config`` and the packaged configs (issue 27)."""

import difflib
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
from spacy.cli.train import train
from spacy.tokens import DocBin
from spacy.util import load_config, load_model_from_config
from thinc.api import Config

from spacy_knowfree.about import __version__
from spacy_knowfree.cli import main
from spacy_knowfree.knowledge.pipeline import EXTENSION_SPANS_KEY, build_knowledge_pipeline
from spacy_knowfree.packaged_configs import (
    EXTEND_CONFIGS,
    TRAINING_CONFIGS,
    apply_overrides,
    config_dir,
    crf_peer_names,
    read_packaged_config,
    with_crf_tags,
    without_crf_tags,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN = [
    ("张三在北京工作。", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("李四去了上海。", [(0, 2, "PER"), (4, 6, "LOC")]),
    ("王五加入了腾讯公司", [(0, 2, "PER"), (5, 9, "ORG")]),
    ("赵六和钱七在深圳见面", [(0, 2, "PER"), (3, 5, "PER"), (6, 8, "LOC")]),
]


def run_cli(args: List[str], capsys) -> Tuple[int, str]:
    """Run ``knowfree ARGS`` in-process: (exit code, stdout + stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """train.spacy / dev.spacy: character tokens, the gold spans both as doc.spans['sc'] and doc.ents."""
    path = tmp_path_factory.mktemp("corpus")
    nlp = spacy.blank("zh")
    db = DocBin()
    for text, spans in TRAIN:
        doc = nlp.make_doc(text)
        doc.spans["sc"] = [doc.char_span(s, e, label=label) for s, e, label in spans]
        doc.ents = list(doc.spans["sc"])
        db.add(doc)
    for split in ("train", "dev"):
        db.to_disk(path / f"{split}.spacy")
    return path


# ----------------------------------------------------------------------------- one source of truth
def test_repository_configs_folder_is_the_packaged_folder():
    assert (REPO_ROOT / "configs").resolve() == config_dir().resolve()
    assert config_dir().resolve() == (REPO_ROOT / "spacy_knowfree" / "configs").resolve()
    shipped = sorted(p.name for p in config_dir().glob("*.cfg"))
    assert shipped == sorted(list(TRAINING_CONFIGS.values()) + list(EXTEND_CONFIGS.values()))


@pytest.mark.parametrize(
    "args,name",
    [
        (["init", "config", "{out}", "--system", "knowfree"], "knowfree_zh_cpu.cfg"),
        (["init", "config", "{out}", "--system", "spancat", "--lang", "zh"], "spancat_zh_cpu.cfg"),
        (["init", "config", "{out}", "--system", "ner", "--encoder", "cnn"], "ner_zh_cpu.cfg"),
        (["init", "config", "{out}", "--system", "knowfree", "--encoder", "trf"], "knowfree_trf.cfg"),
        (["init", "extend-config", "{out}", "--source", "lexicon"], "extend_lexicon.cfg"),
        (["init", "extend-config", "{out}", "--source", "smollm2"], "extend_smollm2.cfg"),
        (["init", "extend-config", "{out}", "--source", "openai"], "extend_openai.cfg"),
        (["init", "extend-config", "{out}", "--source", "lexicon+llm"], "extend_lexicon_llm.cfg"),
    ],
)
def test_written_config_is_the_file_the_repository_uses(tmp_path, capsys, args, name):
    out = tmp_path / "out" / "x.cfg"
    code, text = run_cli([a.format(out=out) for a in args], capsys)
    assert code == 0, text
    # the file that README, project.yml and the benchmarks use (configs/...), byte for byte
    assert out.read_bytes() == (REPO_ROOT / "configs" / name).read_bytes()
    assert str(out) in text


def test_written_config_is_the_packaged_one_plus_the_options(tmp_path, capsys):
    out = tmp_path / "trf.cfg"
    options = [
        "--vars.encoder",
        "/models/bert-base-chinese",
        "--training.max_steps",
        "7",
        "--paths.train",
        "corpus/train.spacy",
    ]
    code, text = run_cli(["init", "config", str(out), "--system", "knowfree", "--encoder", "trf"] + options, capsys)
    assert code == 0, text
    packaged = read_packaged_config("knowfree_trf.cfg")
    written = out.read_text("utf8")
    expected = Config().from_str(
        packaged,
        overrides={
            "vars.encoder": "/models/bert-base-chinese",
            "training.max_steps": 7,
            "paths.train": "corpus/train.spacy",
        },
        interpolate=False,
    )
    assert Config().from_str(written, interpolate=False) == expected
    # only the three lines changed: comments and layout are kept
    changed = [
        line for line in difflib.ndiff(packaged.splitlines(), written.splitlines()) if line.startswith(("+ ", "- "))
    ]
    assert sorted(changed) == sorted(
        [
            '- encoder = "bert-base-chinese"',
            '+ encoder = "/models/bert-base-chinese"',
            "- max_steps = 3000",
            "+ max_steps = 7",
            "- train = null",
            '+ train = "corpus/train.spacy"',
        ]
    )
    assert "# KnowFREE with a transformer encoder" in written
    # still overridable when used
    config = load_config(out, overrides={"vars.encoder": "other"}, interpolate=True)
    assert config["components"]["transformer"]["model"]["name"] == "other"


def test_apply_overrides_keeps_text_without_options_and_replaces_multiline_values():
    text = "# c\n[vars]\nx = [\n    1,\n    2]\ny = 1\n\n[other]\nx = 3\n"
    assert apply_overrides(text, {}, "t.cfg") == text
    out = apply_overrides(text, {"vars.x": [5]}, "t.cfg")
    assert out == "# c\n[vars]\nx = [5]\ny = 1\n\n[other]\nx = 3\n"


# ----------------------------------------------------------------------------- training configs train
@pytest.mark.parametrize(
    "system,pipeline",
    [("knowfree", ["knowfree"]), ("spancat", ["spancat"]), ("ner", ["tok2vec", "ner"])],  # ner listens to a tok2vec
)
@pytest.mark.parametrize("crf_tags", [False, True], ids=["no_crf_tags", "packaged"])
def test_written_cnn_config_trains_with_spacy_train(tmp_path, capsys, corpus, system, pipeline, crf_tags):
    # the packaged CNN configs have the CRF peer since 0.8.0; --no-crf-tags drops it
    if crf_tags:
        pipeline = ["knowfree_crf", *pipeline]
    config_path = tmp_path / f"{system}.cfg"
    code, text = run_cli(
        ["init", "config", str(config_path), "--system", system, *(["--no-crf-tags"] * (not crf_tags))], capsys
    )
    assert code == 0, text
    config = load_config(config_path)
    assert config["nlp"]["pipeline"] == pipeline
    assert config["training"]["annotating_components"] == pipeline[:1] * crf_tags
    pipe = pipeline[-1]
    train(
        config_path,
        tmp_path / "model",
        overrides={
            "paths.train": str(corpus / "train.spacy"),
            "paths.dev": str(corpus / "dev.spacy"),
            "training.max_steps": 2,
            "training.eval_frequency": 1,
        },
    )
    nlp = spacy.load(tmp_path / "model" / "model-last")
    assert nlp.pipe_names == pipeline
    labels = set(nlp.get_pipe(pipe).labels)
    assert {"PER", "LOC", "ORG"} <= labels
    assert ("knowfree_crf_tags" in nlp("张三在北京工作。").user_data) is crf_tags


@pytest.mark.parametrize("name", ["knowfree_zh_cpu.cfg", "spancat_zh_cpu.cfg", "ner_zh_cpu.cfg"])
def test_crf_peer_comes_off_and_back_on_exactly(name):
    packaged = read_packaged_config(name)
    assert crf_peer_names(packaged) == ["knowfree_crf"]
    bare = without_crf_tags(packaged, name)
    assert crf_peer_names(bare) == [] and "crf_tags =" not in bare and "[components.knowfree_crf]" not in bare
    assert without_crf_tags(bare, name) == bare
    assert with_crf_tags(bare, name) == packaged
    with pytest.raises(ValueError, match="KF616"):
        with_crf_tags(packaged, name)
    # ner learns doc.ents; knowfree and spancat their spans_key
    peer = Config().from_str(packaged, interpolate=True)["components"]["knowfree_crf"]
    assert peer["spans_key"] == (None if name.startswith("ner") else "sc")
    if not name.startswith("ner"):  # kept in step with the component's own key
        system = name.split("_")[0]
        moved = Config().from_str(packaged, overrides={f"components.{system}.spans_key": "gold"})
        assert moved["components"]["knowfree_crf"]["spans_key"] == "gold"


def test_crf_tags_flag_on_a_packaged_cnn_config_writes_it_as_packaged(tmp_path, capsys):
    out = tmp_path / "k.cfg"
    code, text = run_cli(["init", "config", str(out), "--system", "knowfree", "--crf-tags"], capsys)
    assert code == 0, text
    assert out.read_text(encoding="utf8") == read_packaged_config("knowfree_zh_cpu.cfg")
    code, text = run_cli(["init", "config", str(tmp_path / "n.cfg"), "--system", "ner", "--no-crf-tags"], capsys)
    assert code == 0 and "without the knowfree_crf component" in text


def test_crf_tags_need_the_cnn_encoder(tmp_path, capsys):
    code, text = run_cli(["init", "config", "-", "--system", "knowfree", "--encoder", "trf", "--crf-tags"], capsys)
    assert code == 1 and "KF615" in text
    # without the flag (or with --no-crf-tags) the trf config is written as packaged
    out = tmp_path / "trf.cfg"
    code, text = run_cli(
        ["init", "config", str(out), "--system", "knowfree", "--encoder", "trf", "--no-crf-tags"], capsys
    )
    assert code == 0 and out.read_text(encoding="utf8") == read_packaged_config("knowfree_trf.cfg")


def test_written_trf_config_validates(tmp_path, capsys):
    pytest.importorskip("spacy_transformers")
    out = tmp_path / "trf.cfg"
    code, text = run_cli(
        ["init", "config", str(out), "--system", "knowfree", "--encoder", "trf", "--vars.encoder", "/models/bert"],
        capsys,
    )
    assert code == 0, text
    config = load_config(out, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)  # no weights are loaded
    assert nlp.pipe_names == ["transformer", "knowfree"]
    assert config["components"]["transformer"]["model"]["name"] == "/models/bert"
    assert nlp.get_pipe("knowfree").cfg["head_lr_scale"] == 50.0


# ----------------------------------------------------------------------------- extend configs
def test_lexicon_extend_config_adds_extension_spans(tmp_path, capsys):
    out = tmp_path / "lexicon.cfg"
    code, text = run_cli(["init", "extend-config", str(out), "--source", "lexicon"], capsys)
    assert code == 0, text
    nlp = build_knowledge_pipeline(out, [], None)
    assert nlp.pipe_names == ["lexicon"]
    doc = nlp("张三在北京大学工作")
    labels = {span.label_.split(":")[0] for span in doc.spans[EXTENSION_SPANS_KEY]}
    assert {"SEG", "POS"} <= labels


@pytest.mark.parametrize(
    "source,pipeline",
    [
        ("smollm2", ["llm_seg", "llm_pos", "llm_ent"]),
        ("openai", ["llm_seg", "llm_pos", "llm_ent"]),
        ("lexicon+llm", ["lexicon", "llm_ent"]),
    ],
)
def test_llm_extend_configs_resolve_their_sections(tmp_path, capsys, source, pipeline):
    pytest.importorskip("spacy_llm")
    import spacy_knowfree.llm  # noqa: F401  (registers the tasks from a checkout too)

    out = tmp_path / "kb.cfg"
    keyless = ["--vars.api_key_env", "null"] if source == "openai" else []
    code, text = run_cli(
        ["init", "extend-config", str(out), "--source", source, "--paths.cache", str(tmp_path / "c.jsonl")] + keyless,
        capsys,
    )
    assert code == 0, text
    config = load_config(out, interpolate=True)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == pipeline
    for name in pipeline:
        if name.startswith("llm_"):
            assert nlp.get_pipe(name)._model.cache.path == tmp_path / "c.jsonl"


def test_openai_without_endpoint_explains_how_to_set_it(tmp_path, capsys):
    code, text = run_cli(["init", "extend-config", str(tmp_path / "a.cfg"), "--source", "openai"], capsys)
    assert code == 0 and "--vars.endpoint URL" in text and "Traceback" not in text
    url = "http://10.0.0.5:8000/v1/chat/completions"
    code, text = run_cli(
        ["init", "extend-config", str(tmp_path / "b.cfg"), "--source", "openai", "--vars.endpoint", url], capsys
    )
    assert code == 0 and "No server is set" not in text
    assert load_config(tmp_path / "b.cfg")["vars"]["endpoint"] == url


# ----------------------------------------------------------------------------- bad input
def test_existing_output_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "x.cfg"
    out.write_text("mine", encoding="utf8")
    code, text = run_cli(["init", "config", str(out), "--system", "ner"], capsys)
    assert code == 1 and "[KF611]" in text and "--force" in text
    assert out.read_text("utf8") == "mine"
    code, text = run_cli(["init", "config", str(out), "--system", "ner", "--force"], capsys)
    assert code == 0, text
    assert out.read_text("utf8") == read_packaged_config("ner_zh_cpu.cfg")


@pytest.mark.parametrize(
    "args,code,expected",
    [
        (["config", "{out}", "--system", "spancat", "--encoder", "trf"], 1, "[KF610]"),
        (["config", "{out}", "--system", "ner", "--vars.encoder", "x"], 1, "[KF612]"),
        (["config", "{out}", "--system", "ner", "--nonsense", "1"], 1, "[KF614]"),
        (["config", "{out}", "--system", "crf"], 2, "'knowfree', 'spancat', 'ner'"),
        (["config", "{out}", "--system", "knowfree", "--encoder", "lstm"], 2, "'cnn', 'trf'"),
        (["config", "{out}", "--system", "knowfree", "--lang", "en"], 2, "'zh'"),
        (["extend-config", "{out}", "--source", "wiki"], 2, "'lexicon', 'smollm2', 'openai', 'lexicon+llm'"),
    ],
)
def test_bad_options_give_a_message_and_no_traceback(tmp_path, args, code, expected):
    out = tmp_path / "x.cfg"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("KNOWFREE_VERBOSE", None)
    result = subprocess.run(
        [sys.executable, "-m", "spacy_knowfree", "init"] + [a.format(out=out) for a in args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    text = result.stdout + result.stderr
    assert result.returncode == code, text
    assert expected in " ".join(text.split()), text
    assert "Traceback" not in text
    assert not out.exists()


def test_version(capsys):
    code, text = run_cli(["--version"], capsys)
    assert code == 0 and text.strip() == f"spacy-knowfree {__version__}"

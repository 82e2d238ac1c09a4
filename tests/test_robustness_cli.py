"""Robustness of the ``knowfree`` command line: bad input files (BOM, damaged
DocBin, binary data, empty file) give a KF message and no traceback, commands
that need a missing extra name it, loading a pipeline never unpickles code,
and ``analyze render`` escapes its HTML."""

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
import srsly
import torch
from spacy.tokens import DocBin, Span
from thinc.shims.pytorch import default_serialize_torch_model

from spacy_knowfree.cli import _app
from spacy_knowfree.cli.merge_labels import read_groups_file
from spacy_knowfree.layers.span_grid import torch_encoder
from spacy_knowfree.layers.torch_state import deserialize_state_dict

from _cli import BINARY, BOM, quiet, run  # noqa: F401  (quiet: an autouse fixture)
from _examples import FLAT, make_examples, make_nlp

REPO = Path(__file__).resolve().parent.parent


def assert_kf_failure(code: int, output: str, kf: str) -> None:
    assert code != 0, output
    assert f"[{kf}]" in output, output
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def docbin_path(tmp_path_factory) -> Path:
    nlp = spacy.blank("zh")
    path = tmp_path_factory.mktemp("data") / "train.spacy"
    DocBin(store_user_data=True, docs=[eg.reference for eg in make_examples(nlp, FLAT)]).to_disk(path)
    return path


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory) -> Path:
    """A tiny initialized knowfree pipeline on disk."""
    nlp = make_nlp()
    nlp.initialize(lambda: make_examples(nlp, FLAT))
    path = tmp_path_factory.mktemp("pipeline") / "model"
    nlp.to_disk(path)
    return path


def bad_docbins(tmp_path: Path, good: Path) -> List[Tuple[str, Path]]:
    """(kind, path) of files that are not DocBins."""
    data = good.read_bytes()
    files = {
        "empty": b"",
        "binary": BINARY,
        "damaged": data[: len(data) // 2],
        "bom": (BOM + '{"text": ["张", "三"]}\n').encode("utf8"),
    }
    out = []
    for kind, content in files.items():
        path = tmp_path / f"{kind}.spacy"
        path.write_bytes(content)
        out.append((kind, path))
    return out


# ----------------------------------------------------------------------------- BOM in text inputs
BOM_INPUTS = {
    "jsonl": '{"text": ["张", "三", "在", "北", "京"], "entities": [{"start": 0, "end": 2, "entity": "PER"}]}\n',
    "conll": "张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n",
    "conllu": "# text = 张三在北京\n1\t张三\t_\tPROPN\t_\t_\t2\tnsubj\t_\t_\n2\t在北京\t_\tVERB\t_\t_\t0\troot\t_\t_\n\n",
    "sighan": "张三 在 北京\n",
}


@pytest.mark.parametrize("fmt", sorted(BOM_INPUTS))
def test_convert_strips_a_leading_bom(capsys, tmp_path, fmt):
    source = tmp_path / f"input.{fmt}"
    source.write_bytes((BOM + BOM_INPUTS[fmt]).encode("utf8"))
    code, output = run(capsys, "convert", source, tmp_path / "out.spacy", "--format", fmt)
    assert code == 0, output
    doc = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("zh").vocab))[0]
    assert doc[0].text == "张"
    assert BOM not in doc.text
    first = min(doc.spans["sc"], key=lambda span: span.start)
    assert (first.start, first.text) == (0, "张三")


def test_convert_jsonl_labels_file_with_a_bom(capsys, tmp_path):
    source = tmp_path / "train.jsonl"
    source.write_text(BOM_INPUTS["jsonl"], encoding="utf8")
    labels = tmp_path / "labels.txt"
    labels.write_bytes((BOM + "PER\n").encode("utf8"))
    code, output = run(capsys, "convert", source, tmp_path / "out.spacy", "--format", "jsonl", "--labels", labels)
    assert code == 0, output
    doc = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(spacy.blank("zh").vocab))[0]
    assert [span.label_ for span in doc.spans["sc"]] == ["PER"]  # a target, not an extension label


@pytest.mark.parametrize("fmt", sorted(BOM_INPUTS))
@pytest.mark.parametrize(
    "kind,content,kf", [("binary", BINARY, "KF100"), ("empty", b"", "KF125"), ("blank", b"\n\n", "KF125")]
)
def test_convert_rejects_binary_and_empty_files(capsys, tmp_path, fmt, kind, content, kf):
    source = tmp_path / f"{kind}.{fmt}"
    source.write_bytes(content)
    code, output = run(capsys, "convert", source, tmp_path / "out.spacy", "--format", fmt)
    assert_kf_failure(code, output, kf)
    assert not (tmp_path / "out.spacy").exists()


def test_conllu_column_message_names_no_missing_option(capsys, tmp_path):
    source = tmp_path / "spaces.conllu"
    source.write_text("1 张三 _ PROPN _ _ 0 root _ _\n\n", encoding="utf8")
    code, output = run(capsys, "convert", source, tmp_path / "out.spacy", "--format", "conllu")
    assert_kf_failure(code, output, "KF101")
    assert "--sep" not in output
    assert "TAB" in output


# ----------------------------------------------------------------------------- bad DocBins
def _docbin_commands(tmp_path: Path, bad: Path, docbin_path: Path, pipeline_dir: Path) -> List[List]:
    return [
        ["sample", bad, tmp_path / "samples", "--k", "1"],
        ["to-jsonl", bad, tmp_path / "out.jsonl"],
        ["filter-extension", bad, tmp_path / "out.spacy", "--drop-family", "POS"],
        ["extend", bad, tmp_path / "out.spacy", "--family", "SEG"],
        ["tune-threshold", pipeline_dir, bad],
        ["merge-labels", bad, tmp_path / "out.spacy", "-m", tmp_path / "map.json", "--groups", docbin_path],
    ]


def test_every_docbin_reader_rejects_bad_files(capsys, tmp_path, docbin_path, pipeline_dir):
    pytest.importorskip("jieba")
    for kind, bad in bad_docbins(tmp_path, docbin_path):
        for args in _docbin_commands(tmp_path, bad, docbin_path, pipeline_dir):
            code, output = run(capsys, *args)
            assert code != 0, (kind, args[0], output)
            assert "[KF124]" in output, (kind, args[0], output)
            assert "Traceback" not in output, (kind, args[0], output)
            assert not (tmp_path / "out.spacy").exists() and not (tmp_path / "out.jsonl").exists()


def test_extend_on_a_damaged_docbin_prints_no_traceback_even_with_a_config(capsys, tmp_path, docbin_path):
    pytest.importorskip("spacy_llm")
    damaged = tmp_path / "damaged.spacy"
    damaged.write_bytes(docbin_path.read_bytes()[:40])
    code, output = run(
        capsys,
        "extend",
        damaged,
        tmp_path / "out.spacy",
        "-c",
        REPO / "configs" / "extend_openai.cfg",
        "--paths.cache",
        tmp_path / "cache.jsonl",
    )
    assert_kf_failure(code, output, "KF124")


def test_tune_threshold_rejects_a_directory_that_is_no_pipeline(capsys, tmp_path, docbin_path):
    (tmp_path / "not_a_pipeline").mkdir()
    code, output = run(capsys, "tune-threshold", tmp_path / "not_a_pipeline", docbin_path)
    assert_kf_failure(code, output, "KF012")


# ----------------------------------------------------------------------------- report
@pytest.mark.parametrize("kind,content", [("binary", BINARY), ("empty", b""), ("damaged", b'{"spans_sc_f": 0.')])
def test_report_rejects_bad_metrics_files(capsys, tmp_path, kind, content):
    path = tmp_path / f"{kind}.json"
    path.write_bytes(content)
    code, output = run(capsys, "report", path)
    assert_kf_failure(code, output, "KF011")


def test_report_reads_metrics_with_a_bom(capsys, tmp_path):
    path = tmp_path / "knowfree.json"
    path.write_bytes((BOM + json.dumps({"ents_p": 0.5, "ents_r": 0.5, "ents_f": 0.5})).encode("utf8"))
    code, output = run(capsys, "report", path)
    assert code == 0, output
    assert "50.00" in output


# ----------------------------------------------------------------------------- errors and --verbose
def test_unexpected_errors_print_a_kf_message_and_traceback_only_with_verbose(capsys, tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"spans_sc_f": 0.5}))  # no spans_sc_p: a KeyError inside report
    code, output = run(capsys, "report", path)
    assert_kf_failure(code, output, "KF601")
    assert "--verbose" in output
    code, output = run(capsys, "report", path, "--verbose")
    assert code == 1
    assert "[KF601]" in output and "Traceback" in output and "KeyError" in output


@spacy.Language.component("knowfree_test_crash")
def _crash(doc):
    raise RuntimeError("the knowledge source broke")


def test_a_crash_inside_extend_is_reported_once_without_a_traceback(capsys, tmp_path, docbin_path, monkeypatch):
    from spacy_knowfree.cli import extend

    def crashing_pipeline(*args, **kwargs):
        nlp = spacy.blank("zh")
        nlp.add_pipe("knowfree_test_crash")
        return nlp

    monkeypatch.setattr(extend, "build_knowledge_pipeline", crashing_pipeline)
    code, output = run(capsys, "extend", docbin_path, tmp_path / "out.spacy")
    assert_kf_failure(code, output, "KF275")
    said = " ".join(output.split())  # messages are wrapped
    assert "the knowledge source broke" in said and "[KF601]" not in said
    assert "--verbose" in output
    code, output = run(capsys, "extend", docbin_path, tmp_path / "out.spacy", "--verbose")
    assert code == 1 and "Traceback" in output and "[KF275]" in output
    assert not (tmp_path / "out.spacy").exists()


def test_config_errors_print_without_a_traceback(capsys, tmp_path, docbin_path):
    pytest.importorskip("spacy_llm")
    code, output = run(
        capsys,
        "extend",
        docbin_path,
        tmp_path / "out.spacy",
        "-c",
        REPO / "configs" / "extend_openai.cfg",
        "--vars.concurrency",
        "0",
        "--paths.cache",
        tmp_path / "cache.jsonl",
    )
    assert_kf_failure(code, output, "KF204")
    assert not (tmp_path / "cache.jsonl").exists()


_DRIVER = """
import contextlib, io, sys
for name in ("spacy_llm", "sentence_transformers", "transformers", "spacy_transformers",
             "matplotlib", "sklearn", "gguf", "accelerate"):
    sys.modules[name] = None  # as in a base install without extras (their entry points stay,
    # so nothing here may build a Language: scripts/check_base_install.sh covers that)
from spacy_knowfree.cli import main
for args in {calls!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
    print("=== ", args[0], code)
    print(out.getvalue())
print("=== loaded spacy_llm:", any(m.startswith("spacy_llm") and sys.modules[m] for m in sys.modules))
"""


def test_commands_that_need_a_missing_extra_name_it(tmp_path, docbin_path):
    source = tmp_path / "train.jsonl"
    source.write_text(BOM_INPUTS["jsonl"], encoding="utf8")
    calls = [
        ["--help"],
        ["augment", "--help"],
        ["synthesize"],
        ["extend", str(docbin_path), str(tmp_path / "llm.spacy"), "-c", str(REPO / "configs" / "extend_openai.cfg")],
        ["convert", str(source), str(tmp_path / "out.spacy"), "--format", "jsonl"],
    ]
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER.format(calls=calls)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    sections = result.stdout.split("=== ")[1:]
    outputs = {section.split("\n", 1)[0].rsplit(" ", 1)[0].strip(): section for section in sections}
    assert "Traceback" not in result.stdout
    assert " 0\n" in outputs["--help"] and "augment" in outputs["--help"] and "convert" in outputs["--help"]
    for command in ("augment", "synthesize", "extend"):
        assert f"{command} 1\n" in outputs[command], outputs[command]
        assert "[KF600]" in outputs[command] and 'spacy-knowfree[llm]"' in outputs[command]
    assert "convert 0\n" in outputs["convert"] and (tmp_path / "out.spacy").exists()
    assert "loaded spacy_llm: False" in result.stdout


# ----------------------------------------------------------------------------- model files
class _WritesAFile:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _poison_model_file(model_file: Path, marker: Path) -> None:
    """Replace the torch state inside a saved knowfree model by a malicious pickle."""
    buffer = io.BytesIO()
    torch.save({"weights": _WritesAFile(str(marker))}, buffer)
    data = srsly.msgpack_loads(model_file.read_bytes())
    replaced = 0
    for node_shims in data["shims"]:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            shim["state"] = buffer.getvalue()
            node_shims[i] = srsly.msgpack_dumps(shim)
            replaced += 1
    assert replaced == 1
    model_file.write_bytes(srsly.msgpack_dumps(data))


def test_loading_a_malicious_model_file_runs_nothing(capsys, tmp_path, pipeline_dir, docbin_path, monkeypatch):
    # Behave like torch < 2.6, whose torch.load unpickles anything unless told weights_only=True.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    poisoned = tmp_path / "poisoned"
    subprocess.run(["cp", "-r", str(pipeline_dir), str(poisoned)], check=True)
    marker = tmp_path / "code_ran"
    _poison_model_file(poisoned / "knowfree" / "model", marker)
    with pytest.raises(ValueError, match=r"\[KF010\]"):
        spacy.load(poisoned)
    with pytest.raises(ValueError, match=r"\[KF010\]"):
        make_nlp().from_disk(poisoned)
    code, output = run(capsys, "tune-threshold", poisoned, docbin_path)
    assert_kf_failure(code, output, "KF010")
    assert not marker.exists()


def test_weights_saved_by_thincs_default_serializer_still_load(pipeline_dir):
    nlp = spacy.load(pipeline_dir)
    encoder = torch_encoder(nlp.get_pipe("knowfree").model.get_ref("head"))
    old_format = default_serialize_torch_model(encoder)  # how pipelines were saved before
    expected = {name: tensor.clone() for name, tensor in encoder.state_dict().items()}
    with torch.no_grad():
        for param in encoder.parameters():
            param.zero_()
    deserialize_state_dict(encoder, old_format, torch.device("cpu"))
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_a_truncated_weights_file_gives_kf010(pipeline_dir):
    nlp = spacy.load(pipeline_dir)
    encoder = torch_encoder(nlp.get_pipe("knowfree").model.get_ref("head"))
    state = default_serialize_torch_model(encoder)
    with pytest.raises(ValueError, match=r"\[KF010\]"):
        deserialize_state_dict(encoder, state[: len(state) // 2], torch.device("cpu"))


# ----------------------------------------------------------------------------- merge-labels --groups
@pytest.mark.parametrize(
    "groups",
    [
        {"人名": []},
        {"人名": ["人物", ""]},
        {"人名": ["人物", 3]},
        {"": ["人物"]},
        {"人名": ["人物"], "组织": ["人物"]},
        ["人名", "人物"],
    ],
)
def test_malformed_groups_are_refused(tmp_path, groups):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups, ensure_ascii=False), encoding="utf8")
    with pytest.raises(ValueError, match=r"\[KF274\]"):
        read_groups_file(path)


def test_groups_file_with_a_bom_is_read(tmp_path):
    path = tmp_path / "groups.json"
    path.write_bytes((BOM + json.dumps({"人名": ["人名", "人物"]}, ensure_ascii=False)).encode("utf8"))
    assert read_groups_file(path) == {"人名": ["人名", "人物"]}


def test_label_map_with_a_bom_is_read(tmp_path):
    from spacy_knowfree.knowledge.label_merging import LabelMap

    path = tmp_path / "map.json"
    path.write_bytes((BOM + LabelMap(params={"p": 3}).to_json()).encode("utf8"))
    assert LabelMap.from_json(path).params["p"] == 3


def test_merge_labels_refuses_malformed_groups(capsys, tmp_path, docbin_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"人名": ["人物"], "组织": ["人物"]}, ensure_ascii=False), encoding="utf8")
    code, output = run(
        capsys, "merge-labels", docbin_path, tmp_path / "out.spacy", "-m", tmp_path / "map.json", "--groups", groups
    )
    assert_kf_failure(code, output, "KF274")
    assert not (tmp_path / "map.json").exists()


# ----------------------------------------------------------------------------- analyze render
def test_render_escapes_labels_and_text(capsys, tmp_path, pipeline_dir):
    nlp = spacy.blank("zh")
    doc = nlp.make_doc("<b>张三</b>")
    label = '<img src=x onerror="alert(1)">'
    doc.spans["sc"] = [Span(doc, 3, 5, label=label)]
    doc.spans["knowfree_ext"] = [Span(doc, 0, 3, label="ENT:<script>")]
    doc.user_data["title"] = "<script>alert(2)</script>"
    data = tmp_path / "dev.spacy"
    DocBin(store_user_data=True, docs=[doc]).to_disk(data)
    out = tmp_path / "render.html"
    code, output = run(capsys, "analyze", "render", pipeline_dir, data, out)
    assert code == 0, output
    page = out.read_text(encoding="utf8")
    assert "<img" not in page and "<script" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "ENT:&lt;script&gt;" in page


def test_main_keeps_verbose_out_of_command_arguments(capsys, tmp_path, monkeypatch):
    source = tmp_path / "train.jsonl"
    source.write_text(BOM_INPUTS["jsonl"], encoding="utf8")
    code, output = run(capsys, "--verbose", "convert", "--verbose", source, tmp_path / "out.spacy", "--format", "jsonl")
    assert code == 0, output  # not "No such option: --verbose"
    assert _app.verbose_errors()
    _app.set_verbose(False)
    monkeypatch.setenv(_app.VERBOSE_ENV, "0")
    assert not _app.verbose_errors()
    monkeypatch.setenv(_app.VERBOSE_ENV, "1")
    assert _app.verbose_errors()

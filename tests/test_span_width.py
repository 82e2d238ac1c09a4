"""max_span_width: "auto" (learned at initialize), the architecture argument,
and the agreement of the model's width with the component's."""

from pathlib import Path

import pytest
import spacy
from spacy.util import load_config, load_model_from_config

import spacy_knowfree
from spacy_knowfree.layers.span_grid import AUTO_WIDTH_CAP, auto_span_width

from _examples import FLAT, NESTED, SMALL_MODEL, make_examples, make_nlp

CONFIGS = Path(spacy_knowfree.__file__).parent / "configs"


@pytest.mark.parametrize(
    "lengths,width",
    [
        ([1], 4),  # 1 + 2 = 3 -> 4
        ([2, 1], 4),  # 2 + 2 = 4
        ([4, 2], 8),  # 4 + 2 = 6 -> 8
        ([9], 12),  # 9 + 3 = 12
        ([10, 3], 16),  # 10 + 3 = 13 -> 16
        ([25], 32),  # 25 + 7 = 32
        ([26], 32),  # 26 + 7 = 33 -> capped
        ([80], AUTO_WIDTH_CAP),
        ([], 4),  # no spans: as for spans of one token
    ],
)
def test_auto_width_rule(lengths, width):
    assert auto_span_width(lengths) == width


def test_auto_width_is_chosen_at_initialize_and_saved(tmp_path):
    nlp = make_nlp()  # max_span_width = "auto" is the default
    knowfree = nlp.get_pipe("knowfree")
    assert knowfree.cfg["max_span_width"] == "auto"
    with pytest.raises(ValueError, match="KF313"):
        _ = knowfree.max_span_width
    nlp.initialize(lambda: make_examples(nlp, FLAT))  # longest target span: 4 tokens
    assert knowfree.max_span_width == 8
    assert knowfree.model.get_ref("head").get_dim("nW") == 8
    logits = knowfree.predict([nlp.make_doc(FLAT[0][0])])[0]
    assert logits.shape == (len(FLAT[0][0]), 8, 3)
    # the saved pipeline says 8, and loads with the same band
    nlp.to_disk(tmp_path / "p")
    assert '"max_span_width":8' in (tmp_path / "p" / "knowfree" / "cfg").read_text().replace(" ", "")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("knowfree").max_span_width == 8
    assert loaded.get_pipe("knowfree").predict([loaded.make_doc(FLAT[0][0])])[0].shape == logits.shape
    # initializing again on other data chooses again: longest NESTED span is 9
    nlp.initialize(lambda: make_examples(nlp, NESTED))
    assert knowfree.max_span_width == 12
    assert knowfree.predict([nlp.make_doc("北京大学")])[0].shape == (4, 12, 3)


def test_extension_spans_longer_than_the_auto_width_are_reported():
    nlp = make_nlp()
    text = "张三在北京大学工作"
    examples = make_examples(
        nlp,
        [(text, [(0, 2, "PER")])],  # longest target: 2 tokens -> width 4
        extension={text: [(0, 2, "ENT:人名"), (3, 9, "POS:PHRASE"), (3, 8, "POS:PHRASE")]},
    )
    with pytest.warns(
        UserWarning,
        match=r"KW001.*2 gold span.*'knowfree_ext'.*max_span_width=4"
        r".*longest: 6",
    ):
        nlp.initialize(lambda: examples)
    assert nlp.get_pipe("knowfree").max_span_width == 4


def test_a_fixed_width_is_kept_and_too_long_targets_are_reported():
    nlp = make_nlp(max_span_width=3)
    with pytest.warns(UserWarning, match=r"KW001.*1 gold span.*'sc'.*max_span_width=3"):
        nlp.initialize(lambda: make_examples(nlp, FLAT))
    assert nlp.get_pipe("knowfree").max_span_width == 3
    assert nlp.get_pipe("knowfree").model.get_ref("head").get_dim("nW") == 3


def test_the_model_width_must_match_the_component():
    with pytest.raises(ValueError, match=r"KF312.*max_span_width=16.*'auto'"):
        make_nlp(model={**SMALL_MODEL, "max_span_width": 16})
    with pytest.raises(ValueError, match=r"KF312.*max_span_width=16.*8"):
        make_nlp(model={**SMALL_MODEL, "max_span_width": 16}, max_span_width=8)
    nlp = make_nlp(model={**SMALL_MODEL, "max_span_width": 8}, max_span_width=8)
    nlp.initialize(lambda: make_examples(nlp, FLAT))
    assert nlp.get_pipe("knowfree").model.get_ref("head").get_dim("nW") == 8
    with pytest.raises(ValueError, match="KF004.*max_span_width"):
        make_nlp(max_span_width=0)


@pytest.mark.parametrize("expected", [32, "auto"])
def test_packaged_config_passes_the_component_width_to_the_model(expected):
    config = load_config(CONFIGS / "knowfree_zh_cpu.cfg", overrides={"vars.max_span_width": expected})
    resolved = config.interpolate()["components"]["knowfree"]
    assert resolved["model"]["max_span_width"] == resolved["max_span_width"] == expected
    nlp = load_model_from_config(config, auto_fill=True)
    head = nlp.get_pipe("knowfree").model.get_ref("head")
    assert head.maybe_get_dim("nW") == (None if expected == "auto" else expected)

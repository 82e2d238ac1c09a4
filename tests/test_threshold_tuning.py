"""Decoding-threshold tuning: sweep_thresholds and ``knowfree tune-threshold``."""

import random

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_knowfree.cli import app
from spacy_knowfree.threshold_tuning import sweep_thresholds, threshold_grid

from _examples import FLAT, NESTED, make_examples, make_nlp, train

runner = CliRunner()

# sentences the model is not trained on, so that its scores are uncertain
HELD_OUT = [
    ("孙八在广州上班", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("周九去了杭州。", [(0, 2, "PER"), (4, 6, "LOC")]),
    ("吴十加入了阿里公司", [(0, 2, "PER"), (5, 9, "ORG")]),
    ("郑一和王二在北京见面", [(0, 2, "PER"), (3, 5, "PER"), (6, 8, "LOC")]),
]


@pytest.fixture(scope="module")
def half_trained():
    """A flat model trained briefly: its held-out spans have middling scores."""
    nlp = make_nlp()
    train(nlp, make_examples(nlp, FLAT), max_steps=40)
    gold = [eg.reference for eg in make_examples(nlp, FLAT + HELD_OUT)]
    return nlp, gold


def test_sweep_matches_the_spacy_scorer_at_every_threshold(half_trained):
    nlp, gold = half_trained
    component = nlp.get_pipe("knowfree")
    sweep = sweep_thresholds(nlp, gold, component, [0.2, 0.5, 0.8])
    assert [s.threshold for s in sweep.scores] == [0.2, 0.5, 0.8]
    assert sweep.n_gold == sum(len(anns) for _, anns in FLAT + HELD_OUT)
    examples = make_examples(nlp, FLAT + HELD_OUT)
    try:
        for score in sweep.scores:
            component.cfg["threshold"] = score.threshold
            scores = nlp.evaluate(examples)
            assert score.f == pytest.approx(scores["spans_sc_f"], abs=1e-6)
            assert score.p == pytest.approx(scores["spans_sc_p"], abs=1e-6)
            assert score.r == pytest.approx(scores["spans_sc_r"], abs=1e-6)
    finally:
        component.cfg["threshold"] = 0.5
    # lower thresholds never predict fewer spans
    counts = [s.n_predicted for s in sweep.scores]
    assert counts == sorted(counts, reverse=True)


def test_nested_components_are_swept_with_the_nested_decoder():
    nlp = make_nlp(nested=True)
    examples = make_examples(nlp, NESTED)
    train(nlp, examples)
    component = nlp.get_pipe("knowfree")
    sweep = sweep_thresholds(nlp, [eg.reference for eg in examples], component, [0.5])
    assert sweep.scores[0].f == pytest.approx(nlp.evaluate(examples)["spans_sc_f"], abs=1e-6)
    assert sweep.scores[0].f == 1.0  # nested gold spans need the nested decoder


def test_cli_saves_the_pipeline_with_the_best_threshold(half_trained, tmp_path):
    nlp, gold = half_trained
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=gold).to_disk(tmp_path / "dev.spacy")
    result = runner.invoke(
        app,
        [
            "tune-threshold",
            str(tmp_path / "model"),
            str(tmp_path / "dev.spacy"),
            "-o",
            str(tmp_path / "new" / "tuned"),  # folders that do not exist yet are made
            "--json",
            str(tmp_path / "sweep.json"),
            "--min",
            "0.1",
            "--max",
            "0.9",
            "--step",
            "0.1",
        ],
    )
    assert result.exit_code == 0, result.output
    sweep = srsly.read_json(tmp_path / "sweep.json")
    assert [round(s["threshold"], 2) for s in sweep["scores"]] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    best = sweep["best"]
    assert best["f"] == max(s["f"] for s in sweep["scores"])
    assert sweep["held_out"]["splits"] == 20  # the default check ran and was written
    assert "Held-out check" in result.output
    tuned = spacy.load(tmp_path / "new" / "tuned")
    assert tuned.get_pipe("knowfree").cfg["threshold"] == pytest.approx(best["threshold"])
    assert tuned.config["components"]["knowfree"]["threshold"] == pytest.approx(best["threshold"])
    scores = tuned.evaluate(make_examples(tuned, FLAT + HELD_OUT))
    assert scores["spans_sc_f"] == pytest.approx(best["f"], abs=1e-6)


def test_docs_without_gold_spans_and_bad_grids_are_reported(half_trained, tmp_path):
    nlp, _ = half_trained
    component = nlp.get_pipe("knowfree")
    with pytest.raises(ValueError, match="KF500"):
        sweep_thresholds(nlp, [nlp.make_doc("今天天气很好")], component)
    with pytest.raises(ValueError, match="KF501"):
        threshold_grid(0.5, 1.0, 0.1)
    with pytest.raises(ValueError, match="KF501"):
        threshold_grid(0.1, 0.5, 0.0)
    blank = spacy.blank("zh")
    blank.to_disk(tmp_path / "blank")
    DocBin(docs=[nlp.make_doc("今天")]).to_disk(tmp_path / "dev.spacy")
    result = runner.invoke(app, ["tune-threshold", str(tmp_path / "blank"), str(tmp_path / "dev.spacy")])
    assert result.exit_code == 1
    assert "KF401" in result.output


def test_held_out_check_scores_each_half_with_the_threshold_chosen_on_the_other(half_trained):
    nlp, gold = half_trained
    component = nlp.get_pipe("knowfree")
    grid = [0.2, 0.35, 0.5, 0.65, 0.8]
    sweep = sweep_thresholds(nlp, gold, component, grid, held_out_splits=3, seed=7)
    check = sweep.held_out
    assert check is not None and check.splits == 3
    # the same halvings, scored by sweeping each half on its own
    rng = random.Random(7)
    gains, chosen = [], []
    for _ in range(3):
        order = list(range(len(gold)))
        rng.shuffle(order)
        first = [gold[i] for i in sorted(order[: len(gold) // 2])]
        second = [gold[i] for i in sorted(order[len(gold) // 2 :])]
        for tune, held in ((first, second), (second, first)):
            pick = sweep_thresholds(nlp, tune, component, grid).best.threshold
            scored = sweep_thresholds(nlp, held, component, grid)
            gains.append(scored.at(pick).f - scored.at(0.5).f)
            chosen.append(pick)
    assert check.gain == pytest.approx(sum(gains) / len(gains), abs=1e-9)
    assert check.mean_threshold == pytest.approx(sum(chosen) / len(chosen))
    assert sweep_thresholds(nlp, gold, component, grid).held_out is None  # off by default


def test_the_current_threshold_is_compared_even_when_the_grid_lacks_it(half_trained):
    nlp, gold = half_trained
    component = nlp.get_pipe("knowfree")
    sweep = sweep_thresholds(nlp, gold, component, [0.3, 0.7], held_out_splits=2)
    assert [s.threshold for s in sweep.scores] == [0.3, 0.7]  # 0.5 is decoded, not reported
    assert sweep.at(0.5) is None
    assert sweep.held_out is not None and 0.3 <= sweep.held_out.mean_threshold <= 0.7

#!/usr/bin/env bash
# Check the base install from the built wheel: `pip wheel` builds it, a fresh
# venv installs THAT wheel (no extras, not the source tree), and from a folder
# outside the checkout the CLI must work with only what the wheel ships: the
# packaged configs (`knowfree init config`), `spacy train` and `spacy evaluate`
# on them, and commands that need an extra must say which one (a KF error, no
# traceback). Last, the [lexicon] extra: `knowfree init extend-config` and
# `knowfree extend` with that config.
#
#   scripts/check_base_install.sh            # from the repository root (CI: .ci/run)
#   PYTHON=python3.11 KEEP=1 scripts/check_base_install.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/knowfree-base.XXXXXX")"
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; fi
VENV="$WORK/venv"
KF="$VENV/bin/knowfree"

fail() { echo "check_base_install: FAILED: $*" >&2; exit 1; }

echo "== fresh venv in $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The CPU build of torch first, so that pip never pulls a CUDA build.
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
# A copy of what the package is built from, so that no build output lands in the
# checkout; the wheel is built from it (PEP 517, pyproject.toml) and installed.
mkdir -p "$WORK/src"
tar -C "$ROOT" --exclude=__pycache__ -cf - setup.py pyproject.toml MANIFEST.in LICENSE README.md spacy_knowfree \
    | tar -C "$WORK/src" -xf -
echo "== pip wheel"
"$VENV/bin/python" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$WORK/src" 2>"$WORK/wheel.log" \
    || { cat "$WORK/wheel.log"; fail "pip wheel"; }
if grep -q "absent from the .packages. configuration" "$WORK/wheel.log"; then
    cat "$WORK/wheel.log"; fail "setuptools warns about undeclared package data"
fi
WHEEL="$(ls "$WORK"/dist/spacy_knowfree-*.whl)"
"$VENV/bin/python" -m pip install --quiet "$WHEEL"
# From here on nothing may come from the checkout: run outside it.
RUN="$WORK/run"
mkdir -p "$RUN"
cd "$RUN"
unset PYTHONPATH

echo "== the wheel holds the configs, templates and LICENSE, and no tests or benchmarks"
"$VENV/bin/python" - "$WHEEL" "$VENV" <<'PY' || fail "wheel contents"
import sys, zipfile
from pathlib import Path
names = zipfile.ZipFile(sys.argv[1]).namelist()
configs = sorted(Path(n).name for n in names if n.startswith("spacy_knowfree/configs/") and n.endswith(".cfg"))
expected = sorted(["knowfree_zh_cpu.cfg", "knowfree_trf.cfg", "spancat_zh_cpu.cfg", "ner_zh_cpu.cfg",
                   "extend_lexicon.cfg", "extend_smollm2.cfg", "extend_openai.cfg", "extend_lexicon_llm.cfg"])
assert configs == expected, configs
templates = [n for n in names if n.startswith("spacy_knowfree/llm/tasks/templates/") and n.endswith(".jinja")]
assert len(templates) >= 10, templates
assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names), names
assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
import spacy_knowfree
assert Path(spacy_knowfree.__file__).resolve().is_relative_to(Path(sys.argv[2]).resolve()), spacy_knowfree.__file__
PY

echo "== no extras are installed"
for module in spacy_llm spacy_transformers sentence_transformers matplotlib; do
    if "$VENV/bin/python" -c "import $module" 2>/dev/null; then
        fail "$module is importable in the base install"
    fi
done
"$VENV/bin/python" -c "import jieba" || fail "jieba (a base dependency) is missing"

# run NAME CMD...: the command must succeed, without a traceback.
run() {
    local name="$1"; shift
    echo "== $name (at ${SECONDS}s)"
    if ! "$@" >"$WORK/out.txt" 2>&1; then cat "$WORK/out.txt"; fail "$name exited non-zero"; fi
    if grep -q "Traceback" "$WORK/out.txt"; then cat "$WORK/out.txt"; fail "$name printed a traceback"; fi
}
# needs_extra NAME CMD...: the command must fail with KF600 naming the llm extra, without a traceback.
needs_extra() {
    local name="$1"; shift
    echo "== $name (needs an extra)"
    if "$@" >"$WORK/out.txt" 2>&1; then cat "$WORK/out.txt"; fail "$name succeeded without its extra"; fi
    grep -q "KF600" "$WORK/out.txt" || { cat "$WORK/out.txt"; fail "$name: no KF600 message"; }
    grep -q 'spacy-knowfree\[llm\]' "$WORK/out.txt" || { cat "$WORK/out.txt"; fail "$name: the extra is not named"; }
    if grep -q "Traceback" "$WORK/out.txt"; then cat "$WORK/out.txt"; fail "$name printed a traceback"; fi
}

D="$WORK/data"
mkdir -p "$D"
cat >"$D/train.jsonl" <<'EOF'
{"text": ["张", "三", "在", "北", "京", "工", "作"], "entities": [{"start": 0, "end": 2, "entity": "PER"}, {"start": 3, "end": 5, "entity": "LOC"}]}
{"text": ["李", "四", "去", "上", "海"], "entities": [{"start": 0, "end": 2, "entity": "PER"}, {"start": 3, "end": 5, "entity": "LOC"}]}
{"text": ["王", "五", "住", "在", "天", "津"], "entities": [{"start": 0, "end": 2, "entity": "PER"}, {"start": 4, "end": 6, "entity": "LOC"}]}
EOF
echo '{"spans_sc_p": 0.5, "spans_sc_r": 0.25, "spans_sc_f": 0.3333}' >"$D/metrics.json"

run "knowfree --help" "$KF" --help
run "python -m spacy_knowfree --help" "$VENV/bin/python" -m spacy_knowfree --help
run "knowfree convert" "$KF" convert "$D/train.jsonl" "$D/train.spacy" --format jsonl
run "knowfree sample" "$KF" sample "$D/train.spacy" "$D/samples" --k 2
run "knowfree to-jsonl" "$KF" to-jsonl "$D/samples/k2.spacy" "$D/k2.jsonl"
run "knowfree extend (jieba lexicon)" "$KF" extend "$D/train.spacy" "$D/fused.spacy"
run "knowfree filter-extension" "$KF" filter-extension "$D/fused.spacy" "$D/filtered.spacy" --drop-family POS
run "knowfree report" "$KF" report "$D/metrics.json"
# a tiny initialized knowfree pipeline for the commands that load one
cat >"$D/save_pipeline.py" <<'EOF'
import sys
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
nlp = spacy.blank("zh")
nlp.add_pipe("knowfree", config={"spans_key": "sc"})
docs = list(DocBin().from_disk(sys.argv[1]).get_docs(nlp.vocab))
nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in docs])
nlp.to_disk(sys.argv[2])
EOF
run "save a knowfree pipeline" "$VENV/bin/python" "$D/save_pipeline.py" "$D/train.spacy" "$D/model"
run "knowfree tune-threshold" "$KF" tune-threshold "$D/model" "$D/train.spacy" --step 0.3
run "knowfree analyze render" "$KF" analyze render "$D/model" "$D/train.spacy" "$D/render.html"
needs_extra "knowfree augment --help" "$KF" augment --help
needs_extra "knowfree synthesize" "$KF" synthesize
run "knowfree init extend-config --source openai" "$KF" init extend-config "$D/openai.cfg" --source openai
needs_extra "knowfree extend -c openai.cfg" "$KF" extend "$D/train.spacy" "$D/llm.spacy" -c "$D/openai.cfg"

# the packaged training configs: written, trained by spacy train as they are, evaluated
run "knowfree --version" "$KF" --version
grep -q "^spacy-knowfree [0-9]" "$WORK/out.txt" || { cat "$WORK/out.txt"; fail "knowfree --version"; }
for system in knowfree spancat ner; do
    run "knowfree init config --system $system" "$KF" init config "$D/$system.cfg" --system "$system"
done
run "knowfree init config --encoder trf" "$KF" init config "$D/trf.cfg" --system knowfree --encoder trf
grep -q 'spacy-knowfree\[transformers\]' "$WORK/out.txt" || { cat "$WORK/out.txt"; fail "trf: the extra is not named"; }
TRAIN_ARGS=(--paths.train "$D/train.spacy" --paths.dev "$D/train.spacy" --training.eval_frequency 12)
run "spacy train knowfree (24 steps)" "$VENV/bin/python" -m spacy train "$D/knowfree.cfg" \
    --output "$D/train_knowfree" "${TRAIN_ARGS[@]}" --training.max_steps 24
for system in spancat ner; do
    run "spacy train $system (2 steps)" "$VENV/bin/python" -m spacy train "$D/$system.cfg" \
        --output "$D/train_$system" "${TRAIN_ARGS[@]}" --training.max_steps 2 --training.eval_frequency 1
done
run "spacy evaluate" "$VENV/bin/python" -m spacy evaluate "$D/train_knowfree/model-last" "$D/train.spacy" \
    --output "$D/eval.json"
"$VENV/bin/python" -c "import json, sys; assert 'spans_sc_f' in json.load(open(sys.argv[1]))" "$D/eval.json" \
    || fail "spacy evaluate wrote no spans_sc_f"

echo "== the [lexicon] extra"
"$VENV/bin/python" -m pip install --quiet "$WHEEL[lexicon]"
run "knowfree init extend-config --source lexicon" "$KF" init extend-config "$D/lexicon.cfg" --source lexicon
run "knowfree extend -c lexicon.cfg" "$KF" extend "$D/train.spacy" "$D/fused_cfg.spacy" -c "$D/lexicon.cfg"
"$VENV/bin/python" - "$D/fused_cfg.spacy" <<'PY' || fail "the fused docs carry no extension spans"
import sys
import spacy
from spacy.tokens import DocBin
docs = list(DocBin().from_disk(sys.argv[1]).get_docs(spacy.blank("zh").vocab))
assert docs and all(len(doc.spans["knowfree_ext"]) > 0 for doc in docs), [len(d.spans.get("knowfree_ext", [])) for d in docs]
assert all(len(doc.spans["sc"]) > 0 for doc in docs)  # gold spans kept
PY
echo "check_base_install: OK (${SECONDS}s)"

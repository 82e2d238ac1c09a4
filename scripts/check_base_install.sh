#!/usr/bin/env bash
# Check the base install: `pip install spacy-knowfree` with no extras, in a fresh
# venv of its own, must give a working CLI, and commands that need an extra
# must say which one (a KF error, no traceback).
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
# A copy of what the package is built from, so that no build output lands in the checkout.
mkdir -p "$WORK/src"
tar -C "$ROOT" --exclude=__pycache__ -cf - setup.py README.md spacy_knowfree | tar -C "$WORK/src" -xf -
"$VENV/bin/python" -m pip install --quiet "$WORK/src"

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
    echo "== $name"
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
needs_extra "knowfree extend -c configs/extend_openai.cfg" \
    "$KF" extend "$D/train.spacy" "$D/llm.spacy" -c "$ROOT/configs/extend_openai.cfg"
echo "check_base_install: OK"

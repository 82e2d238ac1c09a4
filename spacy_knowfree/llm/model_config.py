"""Finding the ``@llm_models`` block in an LLM or knowledge-pipeline config."""

from typing import Any, Dict, Mapping, Optional, Tuple


def find_model_block(
    config: Mapping[str, Any], section: Optional[str] = None, *, prefer_task: Optional[str] = None
) -> Tuple[str, Dict[str, Any]]:
    """The ``@llm_models`` block a command should use.

    config (Mapping[str, Any]): an interpolated config.
    section (Optional[str]): dotted section name (e.g. ``components.llm_ent.model``);
        default: a top-level ``[model]`` block, else the model of the first
        ``llm`` component (of the first one running ``prefer_task``, if any),
        so the knowledge configs of ``knowfree extend`` work too.
    prefer_task (Optional[str]): registered task name to prefer.
    RETURNS (Tuple[str, Dict[str, Any]]): section name and block; raises
        ``KeyError`` when there is none.
    """
    if section:
        block: Any = config
        for part in section.split("."):
            if not isinstance(block, Mapping) or part not in block:
                raise KeyError(section)
            block = block[part]
        if not isinstance(block, Mapping) or "@llm_models" not in block:
            raise KeyError(section)
        return section, dict(block)
    if isinstance(config.get("model"), Mapping) and "@llm_models" in config["model"]:
        return "model", dict(config["model"])
    candidates = []
    for name, comp in (config.get("components") or {}).items():
        if not isinstance(comp, Mapping) or comp.get("factory") != "llm":
            continue
        model = comp.get("model")
        if isinstance(model, Mapping) and "@llm_models" in model:
            task: Mapping[str, Any] = comp["task"] if isinstance(comp.get("task"), Mapping) else {}
            other_task = prefer_task is not None and task.get("@llm_tasks") != prefer_task
            candidates.append((other_task, f"components.{name}.model", dict(model)))
    if not candidates:
        raise KeyError("model")
    _, name, block = min(candidates, key=lambda c: c[0])  # stable: the first preferred one
    return name, block


#: sections whose names are plain settings: an override must name an existing one
CHECKED_SECTIONS = ("vars", "paths")


def check_overrides(config_path: Any, overrides: Optional[Mapping[str, Any]]) -> None:
    """Refuse overrides such as ``--vars.endpont`` that name no setting of the
    config (spaCy would add them silently and the typo would go unnoticed).

    config_path (Any): the config file (read without interpolation).
    overrides (Optional[Mapping[str, Any]]): dotted names -> values.
    Raises ``ValueError`` (KF211) listing the known names.
    """
    if not overrides:
        return
    from thinc.api import Config

    from ..errors import Errors

    raw = Config().from_disk(config_path, interpolate=False)
    for section in CHECKED_SECTIONS:
        known: Mapping[str, Any] = raw[section] if isinstance(raw.get(section), Mapping) else {}
        unknown = [
            name for name in overrides if name.split(".", 1)[0] == section and name.split(".", 1)[-1] not in known
        ]
        if unknown:
            names = ", ".join(f"--{section}.{key}" for key in known) or "none"
            raise ValueError(
                Errors.KF211.format(
                    unknown=", ".join(f"--{u}" for u in unknown), section=section, path=config_path, known=names
                )
            )

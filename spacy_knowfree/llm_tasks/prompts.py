"""Prompt templates: the built-in Jinja files and a sandboxed renderer.

Built-in templates live in ``templates/<task>.<lang>.jinja`` (``zh`` and
``en``); they are written after the prompts of the KnowFREE paper, appendix G
(figures 9 and 10). A template sees these variables:

* ``text``: the sentence (or shard) to annotate;
* ``examples``: few-shot examples, each with ``.text`` and ``.answer`` (the
  expected reply as a JSON string);
* ``labels``: suggested entity types (entities task, may be empty);
* ``tags``: the POS tag set to use (POS task, may be empty);
* ``words`` / ``words_json``: the given segmentation (POS task; ``None`` when
  the doc has no ``SEG:`` spans and the model must segment by itself).
"""
from pathlib import Path
from typing import Any, List

import jinja2
import jinja2.sandbox

from ..errors import Errors

TEMPLATE_DIR = Path(__file__).parent / "templates"
TASK_NAMES = ("entities", "segmentation", "pos")


def available_languages(task: str) -> List[str]:
    """Languages with a built-in template for ``task``."""
    return sorted(p.name.split(".")[1] for p in TEMPLATE_DIR.glob(f"{task}.*.jinja"))


def read_template(task: str, lang: str) -> str:
    """The built-in template for ``task`` (one of TASK_NAMES) in ``lang``."""
    path = TEMPLATE_DIR / f"{task}.{lang}.jinja"
    if not path.exists():
        raise ValueError(
            Errors.KF200.format(task=task, lang=lang, available=", ".join(available_languages(task)) or "none")
        )
    return path.read_text(encoding="utf8")


class PromptRenderer:
    """Render one template string in a Jinja sandbox (templates may come from users)."""

    def __init__(self, template: str):
        env = jinja2.sandbox.SandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, undefined=jinja2.StrictUndefined
        )
        self.source = template
        self._template = env.from_string(template)

    def __call__(self, **data: Any) -> str:
        return self._template.render(**data).strip() + "\n"

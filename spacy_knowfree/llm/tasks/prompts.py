"""Prompt templates: the built-in Jinja files and a sandboxed renderer.

Built-in templates live in ``templates/<task>.<version>.<lang>.jinja``
(``entities.v1.zh.jinja``; ``zh`` and ``en``); they are written after the
prompts of the KnowFREE paper, appendix G (figures 9 and 10). Each registered
task reads the template version of its own registered name
(``spacy-knowfree.ExtensionEntities.v1`` reads ``entities.v1.*``), so a
changed prompt is a new file and a new registered version, never an edit of
a ``v1`` file. A task template sees these variables:

* ``text``: the sentence (or shard) to annotate;
* ``examples``: few-shot examples, each with ``.text`` and ``.answer`` (the
  expected reply as a JSON string);
* ``labels``: suggested entity types (entities task, may be empty);
* ``tags``: the POS tag set to use (POS task, may be empty);
* ``words`` / ``words_json``: the given segmentation (POS task; ``None`` when
  the doc has no ``SEG:`` spans and the model must segment by itself).
"""

from pathlib import Path
from typing import Any, List, Optional

import jinja2
import jinja2.sandbox

from ...errors import Errors

TEMPLATE_DIR = Path(__file__).parent / "templates"
TASK_NAMES = ("entities", "segmentation", "pos")
#: The template version the ``.v1`` registered tasks read.
DEFAULT_VERSION = "v1"


def template_path(task: str, lang: str, version: str = DEFAULT_VERSION) -> Path:
    """Where the built-in template ``<task>.<version>.<lang>.jinja`` is."""
    return TEMPLATE_DIR / f"{task}.{version}.{lang}.jinja"


def available_languages(task: str, version: str = DEFAULT_VERSION) -> List[str]:
    """Languages with a built-in template for ``task`` in ``version``."""
    return sorted(p.name.split(".")[2] for p in TEMPLATE_DIR.glob(f"{task}.{version}.*.jinja"))


def read_template(task: str, lang: str, version: str = DEFAULT_VERSION) -> str:
    """The built-in template for ``task`` (e.g. one of TASK_NAMES) in ``lang``.

    task (str): the template's task name (``entities``, ``generation`` ...).
    lang (str): its language (``zh`` or ``en``).
    version (str): the template version (``v1``).
    RETURNS (str): the Jinja source. RAISES ValueError: KF200 when there is none.
    """
    path = template_path(task, lang, version)
    if not path.exists():
        raise ValueError(
            Errors.KF200.format(
                task=f"{task}.{version}", lang=lang, available=", ".join(available_languages(task, version)) or "none"
            )
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


class PromptedTask:
    """What every spacy-knowfree task with a built-in prompt shares.

    Subclasses name their template with ``task_name`` and ``template_version``
    (the version of their registered name, ``v1`` unless set: ``spacy-knowfree.X.v1``
    reads ``templates/<task_name>.v1.<lang>.jinja``) and call :meth:`_init_prompt`.
    """

    #: Name of the built-in template files (``templates/<task_name>.<version>.<lang>.jinja``).
    task_name: str = ""
    #: Template version read by the registered task (``"v1"`` for ``spacy-knowfree.X.v1``).
    template_version: str = DEFAULT_VERSION

    def _init_prompt(
        self, lang: str, template: Optional[str], prompt_examples: Optional[List[Any]], spans_key: str
    ) -> None:
        """Read the template (``template`` overrides the built-in one for ``lang``)."""
        self._lang = lang
        self._template = (
            template if template is not None else read_template(self.task_name, lang, self.template_version)
        )
        self._renderer = PromptRenderer(self._template)
        self._prompt_examples: List[Any] = list(prompt_examples or [])
        self._spans_key = spans_key

    @property
    def prompt_template(self) -> str:
        """The template text (checked by spacy-llm's ``BatchCache``)."""
        return self._template

    @property
    def prompt_examples(self) -> List[Any]:
        """The few-shot examples shown in the prompt."""
        return list(self._prompt_examples)

    @property
    def spans_key(self) -> str:
        """The ``doc.spans`` key the task reads or writes."""
        return self._spans_key

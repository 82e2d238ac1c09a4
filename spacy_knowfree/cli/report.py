"""``knowfree report``: one table of P/R/F from several ``spacy evaluate`` outputs."""

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import typer
from wasabi import msg

from ..errors import Errors
from ._app import app
from ._options import existing_file_argument


def main_scores(metrics: Dict) -> Optional[Tuple[str, float, float, float]]:
    """(source, P, R, F) of a metrics dict: the first spans_<key>_f, else ents_f."""
    for key in sorted(metrics):
        if key.startswith("spans_") and key.endswith("_f") and metrics[key] is not None:
            prefix = key[: -len("_f")]
            return prefix, metrics[f"{prefix}_p"], metrics[f"{prefix}_r"], metrics[key]
    if metrics.get("ents_f") is not None:
        return "ents", metrics["ents_p"], metrics["ents_r"], metrics["ents_f"]
    return None


def read_metrics(path: Path) -> Dict:
    """A metrics JSON object (a leading BOM is ignored); anything else raises KF011."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError included
        raise ValueError(Errors.KF011.format(path=path, error=f"{type(err).__name__}: {err}"[:200])) from None
    if not isinstance(data, dict):
        raise ValueError(Errors.KF011.format(path=path, error=f"the top level is a {type(data).__name__}"))
    return data


def score_rows(paths: List[Path]) -> List[Tuple[str, str, str, str, str]]:
    rows = []
    for path in paths:
        found = main_scores(read_metrics(path))
        if found is None:
            raise ValueError(Errors.KF009.format(path=path))
        source, p, r, f = found
        rows.append((path.stem, source, f"{100 * p:.2f}", f"{100 * r:.2f}", f"{100 * f:.2f}"))
    return rows


@app.command("report")
def report_cli(
    metrics: List[Path] = existing_file_argument("Metrics JSON files (spacy evaluate --output)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write a markdown table."),
) -> None:
    """Print one P/R/F table (in %) for several evaluated pipelines."""
    try:
        rows = score_rows(metrics)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    header = ("system", "scores", "P", "R", "F1")
    msg.table(rows, header=header, divider=True, aligns=("l", "l", "r", "r", "r"))
    if output is not None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(lines) + "\n", encoding="utf8")
        msg.good(f"Wrote {output}")

"""Past one machine: batch inference (``knowfree apply``) and knowledge
extension (``knowfree extend --engine ray``) over shards, locally or on Ray
Data actors. Ray is optional (``pip install "spacy-knowfree[ray]"``) and only
imported when the Ray engine runs."""

from .apply import ApplySummary, apply_model, predicted_record
from .inputs import ReadOptions, find_inputs

__all__ = ["ApplySummary", "ReadOptions", "apply_model", "find_inputs", "predicted_record"]

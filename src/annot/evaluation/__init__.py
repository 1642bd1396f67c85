"""Per-word evaluation exactly as the annotation literature does it, and evaluation runs over a store."""

from annot.evaluation.metrics import Summary, WordMetrics, per_word_metrics, summarize

__all__ = ["Summary", "WordMetrics", "per_word_metrics", "summarize"]

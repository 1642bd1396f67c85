"""Loading a store and annotating: neighbour search in the shared space and one scorer per method."""

from annot.retrieval.model import METHODS, Annotation, AnnotationModel, TagScore, Vote

__all__ = ["METHODS", "Annotation", "AnnotationModel", "TagScore", "Vote"]

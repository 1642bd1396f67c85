"""annot: automatic image annotation with CNN features, word vectors and CCA (Murthy, Maji & Manmatha, ICMR 2015)."""

from annot.errors import AnnotError

__version__ = "0.1.0"

__all__ = ["AnnotError", "__version__"]

"""The established annotation methods of the paper's Table 1, on the store's own image features."""

from annot.retrieval.baselines.base import Baseline, TrainingData
from annot.retrieval.baselines.metric import TwoPassKNNML
from annot.retrieval.baselines.neighbours import JEC, MBRM, Frequency, TwoPassKNN
from annot.retrieval.baselines.svm import SVMDMBRM
from annot.retrieval.baselines.tagprop import TagProp

BASELINES: dict[str, type[Baseline]] = {
    c.name: c for c in (Frequency, JEC, TwoPassKNN, TwoPassKNNML, TagProp, MBRM, SVMDMBRM)
}

__all__ = ["BASELINES", "Baseline", "TrainingData"]

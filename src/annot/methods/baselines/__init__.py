"""The established annotation methods of the paper's Table 1, on the store's own image features."""

from annot.methods.baselines.base import Baseline, TrainingData
from annot.methods.baselines.metric import TwoPassKNNML
from annot.methods.baselines.neighbours import JEC, MBRM, Frequency, TwoPassKNN
from annot.methods.baselines.svm import SVMDMBRM
from annot.methods.baselines.tagprop import TagProp

BASELINES: dict[str, type[Baseline]] = {
    c.name: c for c in (Frequency, JEC, TwoPassKNN, TwoPassKNNML, TagProp, MBRM, SVMDMBRM)
}

__all__ = ["BASELINES", "Baseline", "TrainingData"]

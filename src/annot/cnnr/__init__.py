"""CNN-R (paper §3.5): a CNN trained to regress the mean word vector of an image's tags.

``annot.cnnr.network`` (backbones, the model, its encoders), ``annot.cnnr.train`` (``train_cnnr``, resumable) and
``annot.cnnr.answer`` (nearest words, in the vocabulary or open).
"""

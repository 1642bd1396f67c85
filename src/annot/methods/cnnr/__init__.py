"""CNN-R (paper §3.5): a CNN trained to regress the mean word vector of an image's tags.

``network`` (backbones, the model, its encoders), ``train`` (``train_cnnr``, resumable), ``answer`` (nearest words,
in the vocabulary or open) and ``method`` (CNN-R as an annotation method and as the ``cnnr:STORE`` encoder).
"""

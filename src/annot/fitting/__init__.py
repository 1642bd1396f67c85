"""Fitting a store's model: the one fitting path shared by ``annot index``, cross-validation and the benchmarks
(:mod:`annot.fitting.fit`), the cross-validation designs (:mod:`annot.fitting.splits`), cross-validation itself
(:mod:`annot.fitting.cv`) and the confidence calibration fitted on held-out training images
(:mod:`annot.fitting.calibration`)."""

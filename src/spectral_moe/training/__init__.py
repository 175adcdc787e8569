"""Training: the run config, the methods, the optimizer, the Trainer subclass and the fit.

Never imports evaluation or analysis; a whole run (train + evaluate + figures) is
:func:`spectral_moe.pipeline.train`.
"""

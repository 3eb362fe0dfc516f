"""VideoIQ (METHODS.md §1): per-frame precision (or skip) chosen by a policy over an any-precision
quantised backbone.

``method`` declares it for the registry (``VIDEOIQ``: teacher -> stage 1 -> stage-2 inputs ->
stage 2; the loops live in searchlab.train); ``evaluate`` is its cost model and metrics from the
decisions taken; ``bundle`` loads and measures a deployable bundle. This package imports nothing
itself: the training modules import ``evaluate``, and ``method`` imports the training modules.
"""

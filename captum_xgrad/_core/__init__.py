"""The private core: one home for each concern shared by the public modules.

- :mod:`.compat`: the only importer of Captum's private helpers;
- :mod:`.validate`: inputs, baselines, targets and degree, one validator each;
- :mod:`.autograd`: the forward and backward passes, chunking, batched targets;
- :mod:`.state`: the one model-state guard (:func:`~.state.preserve_model_state`);
- :mod:`.guard`: the one homogeneity guard of the attribution entry points;
- :mod:`.types`: the one table of torch module classes the rules are about.
"""

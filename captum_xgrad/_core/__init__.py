"""The private core: Captum compatibility (:mod:`.compat`), validation, autograd, the model-state
guard (:mod:`.state`), the homogeneity guard (:mod:`.guard`) and the module-class table."""

"""The params schema: every knob of `params.yaml`, validated on load.

`load_params` reads the file and validates the base sections and every experiment (a base
config with an experiment's overrides deep-merged on top). A bad key, type or value raises
`ParamsError` whose message names the key and what is allowed. The model's parts are keyed by
kind: each part's params classes live beside its layers (`vae_tf.posteriors.params`, ...).
"""

from vae_tf.config.schema import (
    AISParams, DataParams, EvaluationParams, ExportParams, ModelParams, Params, ParamsFile, TrainingParams,
    load_params)

__all__ = ["AISParams", "DataParams", "EvaluationParams", "ExportParams", "ModelParams", "Params", "ParamsFile",
           "TrainingParams", "load_params"]

"""Errors caused by the user's input: reported as one clear message and a non-zero exit."""


class UserError(Exception):
    """Bad params, data or requests: the message says what to fix; no traceback is shown."""


class ParamsError(UserError):
    """`params.yaml` has an unknown key, a wrong type or an out-of-range value."""


class DataError(UserError):
    """A data source cannot be read, or its arrays have the wrong shape or values."""


class TrainingError(UserError):
    """Training could not produce a usable model (e.g. the loss became NaN)."""


class ClusterError(UserError):
    """`TF_CONFIG` does not describe a cluster this worker can join, or the cluster did not form."""

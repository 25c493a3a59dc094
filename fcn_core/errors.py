"""The root of every error a user can cause, and the two that `fcn_core` itself raises.

`UserError` lives here, not in `pipelines`, because `fcn_core` knows nothing of Ray or storage yet
raises errors a user causes (a checkpoint that does not load, backbone weights that cannot be had);
`pipelines.errors` builds every other public error on it, and the job runner catches this one type.
"""


class UserError(Exception):
    """Something the user can fix: bad input, configuration, credentials, references; the message says what."""


class CheckpointError(UserError):
    """A checkpoint cannot be written or loaded; the one-line message says what to do."""


class BackboneWeightsError(UserError, RuntimeError):
    """Backbone weights could not be obtained or do not fit; the message says what to do."""

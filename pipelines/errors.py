"""The base of every error whose message is written for the person running a job."""


class UserError(Exception):
    """Something the user can fix: bad input, configuration, credentials, references."""


class ConfigError(UserError, ValueError):
    """A flag or configuration value is out of range or inconsistent."""

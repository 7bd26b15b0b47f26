"""The one exception type elman raises for problems a user can fix (bad path, bad setting)."""


class UserError(ValueError):
    """A problem with the user's input. The CLI prints its message as a one-line error."""

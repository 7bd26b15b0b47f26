"""The one exception type elman raises for problems a user can fix (bad path, bad setting)."""


class UserError(ValueError):
    """A problem with the user's input. The CLI prints its message as a one-line error."""


def require_positive(settings: object, *names: str) -> None:
    """Raise a UserError naming the first of ``settings``' fields that is not > 0."""
    for name in names:
        value = getattr(settings, name)
        if not value > 0:
            raise UserError(f"`{name}` must be positive, got {value}")

"""The one exception type that reaches the user as a one-line message (exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a value, file or name. The message says what and what to do."""

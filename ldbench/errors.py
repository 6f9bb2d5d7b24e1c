"""The one exception type that reaches the user as a one-line message (exit code 2)."""


class UserError(Exception):
    """Bad input from the user: a value, file or name. The message says what and what to do.

    Always one line: a line break inside quoted user text (a key, a path) is shown as \\n."""

    def __init__(self, message: object = "") -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text)

"""The exception for mistakes in command-line input."""


class UserError(Exception):
    """An error caused by the user's input: printed without a traceback."""

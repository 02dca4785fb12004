"""The one exception type for problems the user can fix (bad files, flags or configs).

Every command catches it and prints its message as a single line with exit code 2, so the
message must name the file or flag and say what is wrong.
"""


class InputError(ValueError):
    """Bad user input; the message names the offending file or flag."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none): what a one-line
    error can quote of a library's multi-line message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

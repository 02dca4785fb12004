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


class BadValue(InputError):
    """A bad value of one setting, named by its key (`max_genres must be >= 1`).

    The layers below the CLI know settings by key only; a command whose values came from its
    flags names the flag instead (`--max-genres must be >= 1`): the CLI's error printer does
    that with `named`. A value read from a file keeps its key, after the file's name.
    """

    def __init__(self, key: str, problem: str, origin: str = "") -> None:
        self.key, self.problem, self.origin = key, problem, origin
        super().__init__(self.named(key))

    def named(self, name: str) -> str:
        """The message with the setting called `name` (unless it came from a file)."""
        prefix = f"{self.origin}: " if self.origin else ""
        return f"{prefix}{self.key if self.origin else name}{self.problem}"

    def read_from(self, origin: str) -> "BadValue":
        return BadValue(self.key, self.problem, origin)

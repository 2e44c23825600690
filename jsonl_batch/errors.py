"""The library's "cannot run as asked" error, shared by every module and mapped by the CLI.

``UsageError`` means the arguments cannot work (an unknown name, an impossible combination, a
bad option value): the CLI shows its message as a usage error (exit 2). It is a
``ValueError``, so code that catches that keeps working; any other exception is a bug.
"""


class UsageError(ValueError):
    """The call's arguments cannot work; the message says why and what to give instead."""

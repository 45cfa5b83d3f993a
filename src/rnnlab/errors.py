"""What a user's mistake is, and its one line: `UserError` and `first_line`.

Kept apart from `rnnlab.cli` (which needs Hydra) so that code without a command line, the served model above
all, can raise and report them with nothing but the standard library.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; reported as one line."""


def first_line(error: BaseException) -> str:
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__

"""How every command ends on a user's mistake: one line that says what is wrong, no traceback.

The library raises `ValueError` and the `OSError`s of files (a missing file, a folder where a file belongs, no
permission) for what a user gave it, and `SaveError` for a write that failed; each message names the problem and
what to do. A command wrapped in `user_errors` prints that message and exits with status 1. `VASWANI_DEBUG=1` in the
environment lets the exception through, with its traceback, for a bug report.
"""

import functools
import os
import sys

from vaswani_hf.files import SaveError

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    SaveError,
)


def user_errors(main):
    """`main(argv)` of a command, ending on a user's mistake with its message alone (see the module)."""

    @functools.wraps(main)
    def command(argv=None):
        try:
            return main(argv)
        except USER_ERRORS as error:
            if os.environ.get("VASWANI_DEBUG", "") not in ("", "0"):
                raise
            sys.exit(f"error: {error}\n(VASWANI_DEBUG=1 shows where it was raised)")

    return command

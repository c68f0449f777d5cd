"""The one error type a user sees as a single line instead of a traceback."""


class UserError(Exception):
    """Bad input the user can fix: the message names the problem and the fix.

    suite.main catches this, prints the message on one line and exits non-zero.
    Anything else is a bug and keeps its traceback.
    """

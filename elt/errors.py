"""One exception type for mistakes a user can fix: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input. The message names the problem and the fix, on one line."""


class UnreadableExample(UserError):
    """One file of a data set cannot be read: a stop, or with data.on_bad_file skip, a recorded gap."""

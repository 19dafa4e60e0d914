"""The one exception type for mistakes a user can cause (bad path, corrupt file, bad image...).

The CLI turns it into a single line on stderr and a non-zero exit; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one sentence."""

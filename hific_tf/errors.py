"""The error type for problems a user can cause and fix."""


class UserError(Exception):
    """A bad input, file, flag or missing resource.

    Its message is one line that names the problem and the fix; the command-line tools print
    it without a traceback and exit non-zero.
    """

"""The one error base class every layer shares (this module imports nothing)."""


class UserError(Exception):
    """An error worded for whoever sees it: a chat user, or an admin at the command line.

    The dispatcher and the command line show its text as it is. Any other exception is a bug:
    it is logged with its traceback and an error id, and the user sees only the id.
    """

    log_level = 20  # logging.INFO: expected in normal use; a service that is down says WARNING

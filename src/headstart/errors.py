"""Errors that are the user's to fix: the CLI prints them as one line, never a traceback."""


class UserError(Exception):
    """A mistake in the user's input (data, names, options) with a message that says what to do."""


class BadImage(UserError):
    """An image file that cannot be decoded. Data loading skips it and lists it in the run folder."""

class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, never a traceback."""

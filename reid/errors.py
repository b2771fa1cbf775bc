class ReidError(Exception):
    """A problem with the user's input (dataset layout, checkpoint, config): one-line message, exit code 2."""

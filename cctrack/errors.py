class CctrackError(Exception):
    """A problem with the user's input: the CLI prints its one-line message and exits with code 2."""

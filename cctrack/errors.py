class CctrackError(Exception):
    """A problem with the user's input: the CLI prints its one-line message and exits with code 2."""


class Interrupted(Exception):
    """The user stopped the run (Ctrl-C): the CLI prints the message, which says how to resume, and exits 130."""

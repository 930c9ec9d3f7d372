"""The one exception type for bad user input: the CLI prints its message on one line, exit 2."""


class UserError(ValueError):
    """Bad input (config, file, field, option): the message names what is wrong and where."""

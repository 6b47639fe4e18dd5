"""Options of the client's entry points, and the error an impossible option value raises."""

from disco.errors import DiscoError


class OptionsError(DiscoError, ValueError):
    """An option value that cannot work; the message names the option."""

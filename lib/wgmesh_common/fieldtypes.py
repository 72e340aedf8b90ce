"""The one check of a parsed value's type, for every file and request schema.

TOML and JSON both have true/false, and Python counts bool as an int: a port
of `true` must not pass as 1.
"""


def has_type(value, kind: type | tuple[type, ...]) -> bool:
    """isinstance(value, kind), except that a bool is only ever a bool."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)

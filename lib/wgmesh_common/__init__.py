"""The core of wgmesh, shared by every wgmesh-* command.

Kept import-light on purpose: the systemd generator imports from here at every
boot, so nothing heavy (pyroute2, click) is imported at package level.
"""

__version__ = "0.1.0"

"""`python -m rsctl`: the same as the console script."""
from rsctl.cli import _console

_console()

"""One module per command, each registering its :class:`~dynamicvit.cli.registry.Command`; the import order
is the order of the top-level help."""

# isort: off
from dynamicvit.cli.commands import demo  # noqa: F401
from dynamicvit.cli.commands import train  # noqa: F401
from dynamicvit.cli.commands import compare  # noqa: F401
from dynamicvit.cli.commands import evaluate  # noqa: F401
from dynamicvit.cli.commands import calibrate  # noqa: F401
from dynamicvit.cli.commands import viz  # noqa: F401
from dynamicvit.cli.commands import export  # noqa: F401
from dynamicvit.cli.commands import app  # noqa: F401
from dynamicvit.cli.commands import models  # noqa: F401
from dynamicvit.cli.commands import flops  # noqa: F401
from dynamicvit.cli.commands import tune  # noqa: F401
from dynamicvit.cli.commands import bench  # noqa: F401

# isort: on
from dynamicvit.cli.registry import COMMANDS

__all__ = ["COMMANDS"]

"""pytest plugin (entry point ``pytest11``): fixtures that start simulated devices on free ports.

Installed with labdevices, so users' own test suites can ask for a simulated
printer, incubator, bioreactor, sensor hub or a whole lab by fixture name.
"""

from ._auth import *  # noqa: F403
from ._lab import *  # noqa: F403
from ._modbus import *  # noqa: F403
from ._mqtt import *  # noqa: F403
from ._opcua import *  # noqa: F403
from ._printer import *  # noqa: F403

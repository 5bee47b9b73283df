"""Build hook: compile the toolpath kernels ahead of time into the wheel (and an editable
install's source tree), so that no first job in a fresh environment waits for numba.

Without a C compiler the install still succeeds; the kernels then run under numba's JIT.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_BUILD = "labdevices.toolpath._build_kernels"


class KernelsBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        # the kernel modules from this source tree, whatever the build environment's path
        src = str(Path(self.root) / "src")
        run = f"import sys; sys.path.insert(0, {src!r}); import runpy; runpy.run_module({_BUILD!r}, run_name='__main__')"
        proc = subprocess.run([sys.executable, "-c", run], check=False)
        if proc.returncode != 0:
            self.app.display_warning(
                "labdevices: the toolpath kernels could not be compiled ahead of time "
                "(see above); they will be compiled by numba on first use"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append("src/labdevices/toolpath/_compiled*.so")

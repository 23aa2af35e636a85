# Freeze manifest of the agent (MicroPython manifest syntax: tools/manifestfile.py).
# Include it with a target: include("<repo>/build/micropython/manifest.py", target="unix"|"esp32").
# The module list: build/micropython/modules.txt and what those import (closure.py).
import os

_here = os.getcwd()          # makemanifest runs a manifest with its own folder as cwd
_root = os.path.dirname(os.path.dirname(_here))
_target = options.target or "esp32"

import sys

sys.path.insert(0, _here)
import closure  # noqa: E402  (build/micropython/closure.py: modules.txt + what they import)

for _src, _rel in closure.modules(_target):
    if _src.startswith(os.path.join(_here, "lib") + os.sep):
        module(_rel, base_path=os.path.join(_here, "lib"))
    else:
        module(_rel, base_path=_root)

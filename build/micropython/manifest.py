# Freeze manifest of the agent (MicroPython manifest syntax: tools/manifestfile.py).
# Include it with a target: include("<repo>/build/micropython/manifest.py", target="unix"|"esp32").
# The module list is build/micropython/modules.txt (shared with stage.py).
import os

_here = os.getcwd()          # makemanifest runs a manifest with its own folder as cwd
_root = os.path.dirname(os.path.dirname(_here))
_target = options.target or "esp32"

with open(os.path.join(_here, "modules.txt")) as _f:
    for _line in _f:
        _line = _line.split("#", 1)[0].strip()
        if not _line:
            continue
        if _line.startswith("["):
            _tag, _line = _line[1:].split("]", 1)
            if _tag != _target:
                continue
            _line = _line.strip()
        if _line.startswith("lib:"):
            module(_line[4:], base_path=os.path.join(_here, "lib"))
        else:
            module(_line, base_path=_root)

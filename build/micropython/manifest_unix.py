# The Unix port with the agent frozen in (as an ESP32 image has it): FROZEN_MANIFEST for
# build.sh's micropython-hashpilot binary. Nothing else is frozen (no asyncio, no mip).
include("manifest.py", target="unix")

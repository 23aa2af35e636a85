# ESP32-S3 image: the board's default frozen modules plus the agent.
#   make -C ports/esp32 BOARD=ESP32_GENERIC_S3 BOARD_VARIANT=SPIRAM_OCT \
#        FROZEN_MANIFEST=<repo>/build/micropython/manifest_esp32.py
# (ESP-IDF is not available on the project's machine: docs/micropython.md lists the steps.)
include("$(PORT_DIR)/boards/manifest.py")
include("manifest.py", target="esp32")

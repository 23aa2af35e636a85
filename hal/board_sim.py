"""Earlier name of the serial board-controller backend (hal/board_serial.py), kept so existing
imports keep working; new code imports hal.board_serial.SerialBoardController."""

from hal.board_serial import SerialBoardController

SimBoardController = SerialBoardController

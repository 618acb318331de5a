"""The board: kernel readings (``sensors``: process memory and CPU time, temperature).

Board detection (Raspberry Pi / Jetson / generic) and the gpiozero button and LEDs
arrive with the hardware issue. Every ``/proc`` and ``/sys`` root is a parameter.
"""

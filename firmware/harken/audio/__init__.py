"""Audio in and out: WAV files, ALSA devices, the ring buffer and resampling.

Everything inside Harken is mono int16; the pipeline runs at 16 kHz.
"""

RATE = 16000
"""Sample rate of the pipeline (wake word, VAD, ASR)."""

"""Signal processing: numpy and scipy only, no IO, no clock of its own.

Pure functions and small stateful stream processors that turn 8 kHz line audio into
facts (digits, tones, levels) and make the signals the appliance plays.
"""

RATE = 8000
"""The line's sample rate inside the appliance: everything after the board is 8 kHz mono."""

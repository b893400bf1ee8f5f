"""An ethical call recorder appliance for an analog phone line.

The path of a call: board (GPIO edges, audio) -> line (line events) -> dsp -> call
control -> recorder -> vault -> web. Every arrow is one direction.
"""

__version__ = "0.1.0"

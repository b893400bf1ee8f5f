"""Call control: a pure state machine and the consent profiles (issue 5).

It sits after the line layer and the DSP on the path of a call: line events and detected
digits come in, actions (play the announcement or the beep, start, mute, stop or discard
the recording) go out, with time from an injected clock. The announcements each consent
profile plays ship in `announcements/`; `announce` prepares and checks them.
"""

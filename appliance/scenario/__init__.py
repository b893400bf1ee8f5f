"""Scenarios: small script files that play a phone line to the appliance.

A scenario says what people and the exchange do (`ring 2`, `offhook`, `dial 123 pulse`,
`far-hangup`); `line_model` turns that into physical signals on a simulated board (GPIO
levels with contact bounce, ring pulses, line audio with noise); everything after the
board is production code. No verb injects a line event, a digit or a state. `expect`
lines state what the appliance must have made of it.
"""

"""The shipped default announcements (`<profile>.wav`, 8 kHz PCM16) and `make`, which made them."""

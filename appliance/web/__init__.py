"""The web page: the last stop on the path of a call, where people get recordings back.

Its own process (`appliance web`) and its own system user: it reads the catalog and the
sealed recordings, writes settings and requests into the catalog for the recorder to
read between calls, and never talks to the recorder otherwise. A user's passphrase
unwraps their key slot at login; the keys live in that session's memory only.

    server.py    HTTPS (a self-signed certificate made at first run) on uvicorn
    app.py       the Starlette routes, each with the roles it allows
    sessions.py  server-side sessions, login back-off, one key derivation at a time
    index.py     search by number or name over sealed caller fields (keyed hashes)
    media.py     decrypted WAV with HTTP Range, downloads, the timeline picture
    setup.py     first-run setup codes and the front panel's setup window
    tls.py       the certificate and its fingerprint
"""

"""Off-box copies: the box's recordings survive the loss of the box.

Where it sits: beside the path of a call, after the vault. A copy holds only what is
already sealed on the box (the age recordings, the sealed keyring and key slots) and a
catalog snapshot sealed here, in memory, to the vault key and the owner's recovery key;
the target never sees plaintext or an unsealed key. Each box writes under its own folder
(its box id), so several boxes share one target.

    targets.py   where copies go: a folder (USB disk), rsync over SSH, S3-compatible storage
    s3.py        a small S3 client (SigV4), so the box needs no SDK
    throttle.py  the bandwidth limit
    copy.py      one backup run: incremental by a manifest of SHA-256s, resumable, verified
    restore.py   a new box from a copy; calls listed and exported across boxes
"""

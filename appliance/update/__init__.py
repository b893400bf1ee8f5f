"""Updates without fear: signed bundles, installed beside the running version, kept only
if the new version comes up healthy.

Where it sits: outside the path of a call, around it. A bundle is a tar of wheels and a
manifest signed with the maintainers' Ed25519 key (the box holds only the public keys in
`trusted/`); each release is its own venv under `ROOT/releases/VERSION`, and the services
run `ROOT/current`, a symlink switched at once. The switch waits until the recorder
reports an idle line; if the new version's recorder does not publish a fresh heartbeat
(and the web page does not answer) in time, `current` goes back by itself.

    bundle.py    the bundle format: sign (maintainers), verify (the box)
    releases.py  install a release, switch, check health, roll back
    inbox.py     DATA/updates: bundles verified and waiting, `update.apply` requests, and
                 root's `apply-requested` that applies them
    fetch.py     the newest bundle from `update.source` (a USB stick, an https folder)
"""

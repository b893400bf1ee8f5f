"""Keys, a stock-`age` helper, and `CrashDisk` (the simulator's power cut) for the vault's
tests."""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.scenario.power import PAGE, CrashDisk, PowerCut
from appliance.vault.age import Identity, Recipient

__all__ = ["PAGE", "CrashDisk", "Keys", "PowerCut", "needs_age", "stock_age_decrypt"]


@dataclass(frozen=True)
class Keys:
    device: Identity
    recovery: Identity

    @property
    def recipients(self) -> list[Recipient]:
        return [self.device.recipient, self.recovery.recipient]


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(Identity.generate(), Identity.generate())


def stock_age_decrypt(
    path: Path, identity: Identity, tmp: Path
) -> subprocess.CompletedProcess[bytes]:
    """Debian's `age -d -i`: the owner's way to open a recording."""
    key_file = tmp / "identity.txt"
    key_file.write_text(identity.encode() + "\n")
    return subprocess.run(
        ["age", "-d", "-i", str(key_file), str(path)], capture_output=True, check=False
    )


needs_age = pytest.mark.skipif(shutil.which("age") is None, reason="Debian `age` not installed")

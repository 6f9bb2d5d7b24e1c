"""Data files that installed packages ship beside their code, read as files (the package's Python is never
imported) and checked against a pinned SHA-256, so that a different file is an error, not a different number."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ldbench.errors import UserError


@dataclass(frozen=True)
class PackagedFile:
    """`path` inside the installed distribution `dist`, whose bytes must hash to `sha256`."""

    dist: str
    path: str
    sha256: str
    pin: str  # the requirement that installs this exact file, e.g. "torchxrayvision==1.5.7"

    def read(self) -> bytes:
        """The file's bytes, once their SHA-256 is the pinned one (the checked bytes are the ones used)."""
        try:
            dist = importlib.metadata.distribution(self.dist)
        except importlib.metadata.PackageNotFoundError:
            raise UserError(f"{self.path} comes from the {self.dist} package, which is not installed: "
                            f"pip install -c constraints.txt '{self.pin}' (or pip install -e .)") from None
        location = Path(dist.locate_file(self.path))
        if not location.is_file():
            raise UserError(f"{location} is missing from the installed {self.dist} {dist.version}: "
                            f"pip install --force-reinstall '{self.pin}'")
        data = location.read_bytes()
        found = hashlib.sha256(data).hexdigest()
        if found != self.sha256:
            raise UserError(f"{location} has SHA-256 {found[:12]}…, expected {self.sha256[:12]}… "
                            f"({self.dist} {dist.version}): pip install --force-reinstall '{self.pin}'")
        return data

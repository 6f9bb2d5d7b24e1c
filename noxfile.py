"""nox sessions. Each installs into its own venv with pip (torch==2.14.1 comes from the local disk)."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session(python="3.11")
def tests(session):
    session.install("-c", "constraints.txt", "-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "ldbench", "tests", "benchmarks", "noxfile.py")


@nox.session(python="3.11")
def smoke(session):
    session.install("-c", "constraints.txt", "-e", ".")
    session.run("ldbench", "run", "--suite", "smoke", *session.posargs)


@nox.session(python="3.11")
def bench(session):
    """The regression bench: run the ci suite (every method, both embedded datasets), then compare it with
    the committed baseline; `nox -s bench -- smoke` runs the smaller smoke suite against its baseline."""
    session.install("-c", "constraints.txt", "-e", ".")
    suite = session.posargs[0] if session.posargs else "ci"
    out = session.create_tmp() + "/bench"
    session.run("ldbench", "run", "--suite", suite, "--out", out, "--quiet")
    session.run("ldbench", "check", out, "--baseline", f"benchmarks/baselines/{suite}.json")

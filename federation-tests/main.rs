//! Black-box federation tests: Palabre processes (the `palabre` binary of this package) and
//! one Synapse from PyPI, on loopback with TLS. How to run them: federation-tests/README.md.

mod harness;
mod scenarios;

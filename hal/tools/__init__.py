"""Command-line tools for integrators: chain scan/status, frame analyser."""

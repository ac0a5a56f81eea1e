"""The ``edge-cl`` command line: one module per command, registered in :mod:`edge_cl.cli.main`."""

"""Runtime Engine: shared home of the configuration, the SQL store, errors and the `rte` command."""

__version__ = "0.1.0"

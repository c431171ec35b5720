"""What user modules import to register `python` step functions: `from rte.functions import function`."""

from activities.python_fn import function

__all__ = ["function"]

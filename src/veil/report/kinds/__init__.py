"""Every result kind's renderer; importing this package registers them all in `registry`."""

from . import attacks, evaluation, models, privacy, reproduce, serving, training  # noqa: F401

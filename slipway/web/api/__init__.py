"""The REST API, version 1: JSON in, JSON out, errors of one shape.

One module per noun registers its routes on the shared blueprint.
"""

from slipway.web.api import apps, domains, formation, logs  # noqa: F401 - registers the routes
from slipway.web.api.common import bp

__all__ = ["bp"]

"""The REST API, version 1: JSON in, JSON out, errors of one shape.

One module per noun registers its routes on the shared blueprint.
"""

from slipway.web.api import (  # noqa: F401 - registers the routes
    apps,
    audit,
    capsules,
    domains,
    formation,
    logs,
    openapi,
)
from slipway.web.api.common import bp

__all__ = ["bp"]

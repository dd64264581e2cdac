"""Declarative mappings between Sitecore and Stripe objects, loaded from include/mappings/*.yaml.

    mapping = load_mapping("ordercloud_order_to_payment_intent")
    result = mapping.apply(order)          # .outcome "map" | "skip" | "reject"

docs/mappings.md describes the file format, the transforms and the preview command.
"""

from stripe_sitecore.mapping.engine import Mapping, MappingFailure, MappingResult
from stripe_sitecore.mapping.errors import MappingError, Problem, TransformError
from stripe_sitecore.mapping.loader import load_mapping, mappings_dir

__all__ = [
    "Mapping",
    "MappingError",
    "MappingFailure",
    "MappingResult",
    "Problem",
    "TransformError",
    "load_mapping",
    "mappings_dir",
]

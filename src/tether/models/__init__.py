"""Model adapters behind one protocol, named `provider:model`."""

from tether.models.base import Model, TextSink
from tether.models.names import infer_model
from tether.models.pricing import ModelPrice, cost_of, price_of, register_price

__all__ = [
    "Model",
    "ModelPrice",
    "TextSink",
    "cost_of",
    "infer_model",
    "price_of",
    "register_price",
]

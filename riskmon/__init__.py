"""Riskmon: a real-time fraud and risk monitor for app-based consumer lending."""

__version__ = "0.1.0"

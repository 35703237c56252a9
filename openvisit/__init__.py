"""OpenVisit: open-source connector for EHR-launched video visits."""

__version__ = "0.1.0"

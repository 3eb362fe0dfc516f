"""searchlab: accuracy/compute search for dynamic video recognition networks."""

__version__ = "0.1.0"

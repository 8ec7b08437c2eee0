"""drpilot: disaster-recovery orchestration for ML / LLM inference platforms."""

__version__ = "0.3.0"

"""MedUI core: reading scans, display maths, models and training (no Streamlit here)."""

__version__ = "0.1.0"

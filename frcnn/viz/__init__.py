"""Plotly figure builders, one module per stage; no streamlit here, so figures are testable on their own."""

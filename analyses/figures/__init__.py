"""Plotly figures, one module per analysis: pure functions from result tables to figures,
shared by the dashboard, the reports and the notebooks."""

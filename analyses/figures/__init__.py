"""Plotly figures, one module per analysis: pure functions from result tables to figures,
shared by the dashboard, the reports and the notebooks. Shared pieces: ``checks`` (the column
check), ``heatmap`` (every grid, layer x head included) and ``labels`` (heads as ``L1H2``)."""

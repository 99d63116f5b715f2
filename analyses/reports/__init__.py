"""Offline reports (self-contained HTML) written from analysis results."""

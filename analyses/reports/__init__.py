"""Offline reports written from analysis results: ``page`` writes every page (self-contained
HTML, Markdown); ``circuit`` and ``redundancy`` say what their page holds."""

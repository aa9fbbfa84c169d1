"""Figures (matplotlib) and the HTML report."""

"""Feedback and evaluation: CLIP scoring, metrics, selection policies and HTML reports.

Imports nothing else of this project, so scoring can run beside any generator.
"""

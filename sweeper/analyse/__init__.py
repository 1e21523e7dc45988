"""Read a sweep back: its trials (from Tune's files and MLflow), the picks, UDR, figures and the report.

Nothing here imports Ray: these commands run on any machine that sees the
tracking store and the checkpoints.
"""

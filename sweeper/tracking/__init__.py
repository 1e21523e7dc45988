"""MLflow from the driver: the parent run, one child run per model, and writes that survive an outage."""

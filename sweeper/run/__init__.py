"""Run a sweep: the search space, the Ray cluster, the dataset, live progress and the Tune Tuner."""

"""Export a sweep's models: choose them, package each as a verified folder, write its card, register it."""

"""Shared test set-up: small torch thread counts so tests behave the same on any machine."""

import torch

torch.set_num_threads(1)

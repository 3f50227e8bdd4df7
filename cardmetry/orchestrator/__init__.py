"""Executors that run training jobs outside the process that asks for them, and watch over them."""

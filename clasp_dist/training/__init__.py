"""Training: the driver, the worker loop, the DeepSpeed engine, checkpoints, EMA and run identity."""

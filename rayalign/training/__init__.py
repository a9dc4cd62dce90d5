"""Training on Ray Train: configs, the TorchTrainer driver, and the one TRL worker loop.

RM (``rewards/lora.py``), SFT and DPO (``policy/``) each contribute only a trainer factory;
scheduling, checkpoints, restarts, resume and export live here once.
"""

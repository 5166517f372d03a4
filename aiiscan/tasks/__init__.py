"""What users run besides scans: train, finetune, calibrate, evaluate, selftest, and their helpers."""

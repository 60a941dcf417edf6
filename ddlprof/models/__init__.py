"""DNN macro features, the measured stall dataset, and the stall and step-time models."""

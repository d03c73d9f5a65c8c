"""Sweeps made of ordinary training runs: grid (any keys), alpha (SG vs ASGL over the width), their launchers."""

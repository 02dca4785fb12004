"""The CNN, class weights, the one training loop, metrics and decision rules.

Imports `data` at most; never ray or optuna.
"""

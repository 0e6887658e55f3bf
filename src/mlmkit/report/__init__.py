"""Reporting, at the bottom of the package (it imports nothing of mlmkit but `errors`): progress
bars, experiment loggers, Original/Masked/Predicted rendering, model cards, training-curve plots."""

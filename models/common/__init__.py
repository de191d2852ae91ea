"""Pieces shared by the models of the zoo (not token-pruning primitives: those live in
:mod:`tokenprune`)."""

"""Dataflow compiler: lowers each layer and phase to a tile program for the SAT accelerator."""

"""Paper 1: pose-normalized recognition (nets, stages, training, evaluation)."""

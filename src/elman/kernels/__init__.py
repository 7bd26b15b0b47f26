"""Fast paths for the Simple RNN. Each computes exactly what ``elman.rnn.reference_rnn`` does."""

"""Bumped whenever graph.bert_encoder writes a different graph from the same weights: it is part
of the encoder's version, so vectors from an older graph are embedded again."""

GRAPH_FORMAT = 1

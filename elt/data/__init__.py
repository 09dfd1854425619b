"""Training and evaluation data: datasets as uint8 arrays, video clips, streams, pre-encoded shards, and the one
training data source (`elt.data.source.training_data`) that serves a run in memory, pre-tokenized or sharded."""

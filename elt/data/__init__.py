"""Training and evaluation data: datasets as uint8 arrays, video clips, streams, pre-encoded shards."""

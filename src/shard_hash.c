/* shard_hash.c - placeholder, being written */

/* fanout.c - placeholder, being written */

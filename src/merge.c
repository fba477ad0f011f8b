/* merge.c - placeholder, being written */

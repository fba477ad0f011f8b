/* analyze.c - placeholder, being written */

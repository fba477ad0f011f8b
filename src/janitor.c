/* janitor.c - placeholder, being written */

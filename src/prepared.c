/* prepared.c - placeholder, being written */

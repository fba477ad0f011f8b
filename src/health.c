/* health.c - placeholder, being written */

/* daemon.c - placeholder, being written */

/* server.c - placeholder, being written */
